"""Run notebooks as a fresh Google Colab runtime would, and execute the book's chapters that way.

A Colab-like environment holds only the packages a Colab runtime preinstalls, at the versions of
Colab's published runtime (requirements/colab.txt; requirements/colab-2026.01.txt for the oldest
runtime a notebook can pin; both written by `python -m coursetools.colab_pins`), with that
runtime's Python where this machine has it (pyenv's; else Python 3.11, and a line says so), and
whatever a notebook's own setup cell installs. The setup cell installs the helpers exactly as in Colab,
`pip install "odcourse @ git+<repository>@main"`, here from a local git repository holding the
published helper files (ODCOURSE_INSTALL_FROM points the cell at it).

    python -m coursetools.colab_like [CHAPTER.ipynb ...] [--jobs N]

executes the chapters (default: every chapter in book/) whose code changed since they were
last executed, in that environment, and stores each result in the book's jupyter-cache
(_config.yml's execute.cache). `jupyter-book build` then takes every page's outputs from there:
a chapter is executed once, by the student's kind of runtime, and both the site and the tests
(tests/test_colab_like.py) read that one execution.
"""
from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import nbformat

from . import colab_pins
from .config import ROOT, book_config

UV = [sys.executable, "-m", "uv"]
GIT = ["git", "-c", "user.name=course", "-c", "user.email=course@example.org"]
TIMEOUT = 1200  # seconds for one whole notebook


def helper_repository(folder: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    """A git repository in `folder` with what the public repository holds of the helper package;
    returns the pip requirement that installs from it."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copytree(root / "odcourse", folder / "odcourse", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", folder)
    (folder / "README.md").write_text("Course helpers.\n")
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "helpers"]):
        subprocess.run(GIT + command, cwd=folder, check=True, capture_output=True)
    return f"odcourse @ git+file://{folder}@main"


def find_python(version: str) -> tuple[str, str]:
    """(interpreter, its version) for a runtime's Python "X.Y.Z": an X.Y of pyenv's (the newest
    patch release) or on PATH; else the Python running this (3.11), with a line on stdout saying so."""
    wanted = ".".join(version.split(".")[:2])
    pyenv = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv")) / "versions"
    found = sorted(glob.glob(str(pyenv / f"{wanted}.*" / "bin" / "python")),
                   key=lambda p: [int(v) if v.isdigit() else -1 for v in pathlib.Path(p).parts[-3].split(".")])
    on_path = shutil.which(f"python{wanted}")
    if found:
        chosen = found[-1]
    elif on_path and "shims" not in pathlib.Path(on_path).parts:  # pyenv's shims fail for inactive versions
        chosen = on_path
    else:
        base = getattr(sys, "_base_executable", None) or sys.executable
        print(f"colab-like: this machine has no Python {wanted} (Colab's runtime has {version}): using Python "
              f"{sys.version.split()[0]} instead", flush=True)
        return base, sys.version.split()[0]
    done = subprocess.run([chosen, "-c", "import platform; print(platform.python_version())"], capture_output=True,
                          text=True, check=True)
    return chosen, done.stdout.strip()


# Modules every course notebook imports: compiled to bytecode once in a runtime's template.
WARM_IMPORTS = ("torch", "torchvision", "torchvision.models.detection", "numpy", "scipy.optimize", "scipy.ndimage",
                "matplotlib.pyplot", "ipykernel.kernelapp", "ipywidgets", "IPython", "PIL.Image", "skimage.segmentation",
                "pycocotools.cocoeval", "pip._internal.cli.main")
_templates: dict[str, pathlib.Path] = {}
_templates_lock = threading.Lock()


def _template(runtime: pathlib.Path) -> pathlib.Path:
    """This process's pristine environment of the pins file `runtime` (made once, removed at exit),
    with WARM_IMPORTS compiled to bytecode. uv installs no bytecode and this kind of machine sets
    PYTHONDONTWRITEBYTECODE, so a kernel in a freshly installed environment compiled torch from
    source, about 15 s of every notebook run; a copy of the template starts with the bytecode."""
    key = str(pathlib.Path(runtime).resolve())
    with _templates_lock:
        if key in _templates and (_templates[key] / "bin" / "python").exists():
            return _templates[key]
        folder = pathlib.Path(tempfile.mkdtemp(prefix="colab-like-template-"))
        atexit.register(shutil.rmtree, folder, True)
        env = folder / "env"
        python, _ = find_python(colab_pins.runtime(runtime)["python"])
        variables = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        subprocess.run(UV + ["venv", "-q", "--python", python, str(env)], check=True, env=variables)
        subprocess.run(UV + ["pip", "install", "-q", "--python", str(env / "bin" / "python"), "-r", str(runtime)],
                       check=True, env=variables)
        warm = "import importlib\nfor name in %r:\n    try:\n        importlib.import_module(name)\n" \
               "    except Exception:\n        pass\n" % (WARM_IMPORTS,)
        subprocess.run([str(env / "bin" / "python"), "-c", warm], cwd=folder, capture_output=True, check=False,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "", "MPLBACKEND": "Agg"})
        _templates[key] = env
        return env


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # a writer replaces a file (pip, bytecode) rather than changing it in place
    except OSError:
        shutil.copy2(source, target)


def _fresh_copy(template: pathlib.Path, env: pathlib.Path) -> None:
    """A copy of the environment `template` at `env`, files hard-linked; the scripts of its bin/
    rewritten to run env's own interpreter."""
    shutil.copytree(template, env, symlinks=True, copy_function=_link_or_copy)
    old, new = f"#!{template}/bin/", f"#!{env}/bin/"
    for script in (env / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        text = script.read_bytes()
        if text.startswith(old.encode()):
            mode = script.stat().st_mode
            script.unlink()  # a new file: the template's stays as it is
            script.write_bytes(new.encode() + text[len(old):])
            script.chmod(mode)


def colab_like_kernel(folder: pathlib.Path, runtime: pathlib.Path = colab_pins.CURRENT) -> pathlib.Path:
    """A fresh environment of Colab's preinstalled packages (the pins file `runtime`, with its
    Python) in folder/env, with a Jupyter kernel named colab-like in folder/jupyter (put it on
    JUPYTER_PATH). Returns the environment. It is a copy of this process's template of the
    runtime (nothing a notebook installed or wrote in another copy is in it)."""
    env = folder / "env"
    if env.exists():
        shutil.rmtree(env)
    _fresh_copy(_template(runtime), env)
    spec = folder / "jupyter" / "kernels" / "colab-like"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(env / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))
    return env


def has_helpers(env: pathlib.Path, cwd: pathlib.Path) -> bool:
    """Whether the environment can import the course helpers (from outside the repository)."""
    done = subprocess.run([str(env / "bin" / "python"), "-c", "import odcourse"], cwd=cwd, capture_output=True,
                          check=False)
    return done.returncode == 0


def run_notebook(path: pathlib.Path, folder: pathlib.Path, helpers: str, allow_errors: bool = False,
                 environment: dict | None = None, runtime: pathlib.Path = colab_pins.CURRENT) -> nbformat.NotebookNode:
    """Execute `path` top to bottom in a new Colab-like environment (of the pins file `runtime`)
    made in `folder`; return the executed notebook. Raises RuntimeError (with the end of the
    run's stderr) if it fails."""
    env = colab_like_kernel(folder, runtime)
    if has_helpers(env, folder):
        raise RuntimeError("the Colab-like environment must start without the course helpers")
    work = folder / "work"  # not the repository: its odcourse/ folder must not be importable
    work.mkdir(exist_ok=True)
    executed = folder / "executed.ipynb"
    variables = {**os.environ, "JUPYTER_PATH": str(folder / "jupyter"), "ODCOURSE_INSTALL_FROM": helpers,
                 "MPLBACKEND": "module://matplotlib_inline.backend_inline", **(environment or {})}
    command = [sys.executable, "-m", "coursetools.execute_notebook", str(path), str(executed), "colab-like",
               str(work)] + (["--allow-errors"] if allow_errors else [])
    # stdin closed: with a parent's stdin inherited, nbclient waited minutes for the reply to cells
    # that show live explorers (observed on chapters 2 and 3; 67 s instead of 360 s without it).
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                          env=variables, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{path.name} failed in the Colab-like environment:\n{done.stderr[-5000:]}")
    return nbformat.read(executed, as_version=4)


def setup_output(nb: nbformat.NotebookNode) -> str:
    """What the notebook's setup cell printed."""
    return "".join(o.get("text", "") for o in nb.cells[0].outputs)


def errors(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


# The book's chapters, executed once into the jupyter-cache ---------------------------------------

def chapters(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """The chapter notebooks (book/*.ipynb), in order."""
    from .notebooks import course_notebooks
    return [p for p in course_notebooks(root) if p.parts[-2] == "book"]


def book_cache(root: pathlib.Path = ROOT):
    from jupyter_cache import get_cache
    return get_cache(str(root / book_config(root)["execute"]["cache"]))


def cached_execution(path: pathlib.Path, root: pathlib.Path = ROOT) -> nbformat.NotebookNode | None:
    """The chapter with the outputs of its cached execution, or None if its code has none."""
    source = nbformat.read(path, as_version=4)
    try:
        _, merged = book_cache(root).merge_match_into_notebook(source)
    except KeyError:
        return None
    return merged


def execute_chapter(path: pathlib.Path, helpers: str) -> tuple[nbformat.NotebookNode, float]:
    """Execute one chapter in a new Colab-like environment, as the site shows it (static
    explorer figures). Returns the executed notebook and the seconds it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"colab-{path.stem}-") as folder:
        nb = run_notebook(path, pathlib.Path(folder), helpers, environment={"ODCOURSE_STATIC": "1"})
    if errors(nb):
        raise RuntimeError(f"{path.name} raised an error in the Colab-like environment")
    return nb, time.monotonic() - started


def store_execution(path: pathlib.Path, nb: nbformat.NotebookNode, seconds: float, root: pathlib.Path = ROOT) -> None:
    """Put an executed chapter in the book's jupyter-cache, where `jupyter-book build` finds it."""
    from jupyter_cache.base import CacheBundleIn
    # The cache matches on the code cells (with their metadata) and the kernelspec of the source;
    # nbclient rewrote the kernelspec and added timings to each cell's metadata.
    source = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = source.metadata.get("kernelspec", {})
    for executed, original in zip(nb.cells, source.cells, strict=True):
        executed.metadata = original.metadata
    book_cache(root).cache_notebook_bundle(
        CacheBundleIn(nb=nb, uri=str(path), data={"execution_seconds": seconds}), check_validity=False,
        overwrite=True)


def execute_stale_chapters(paths: list[pathlib.Path], jobs: int = 2, root: pathlib.Path = ROOT) -> dict:
    """Execute the chapters among `paths` with no cached execution of their current code; returns
    {chapter: seconds} for those executed. Raises RuntimeError naming every chapter that failed."""
    stale = [p for p in paths if cached_execution(p, root) is None]
    if not stale:
        return {}
    results, failures = {}, []
    with tempfile.TemporaryDirectory(prefix="helper-repo-") as repo, \
            concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        helpers = helper_repository(pathlib.Path(repo) / "public", root)
        running = {pool.submit(execute_chapter, p, helpers): p for p in stale}
        for future in concurrent.futures.as_completed(running):
            path = running[future]
            try:
                nb, results[path] = future.result()
            except Exception as error:  # noqa: BLE001 - every failing chapter is reported
                failures.append(f"{path.relative_to(root)}: {error}")
                continue
            store_execution(path, nb, results[path], root)  # one writer: this thread
            print(f"executed {path.relative_to(root)} in the Colab-like environment: {results[path]:.0f} s",
                  flush=True)
    if failures:
        raise RuntimeError("\n\n".join(failures))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=pathlib.Path, help="default: every chapter in book/")
    parser.add_argument("--jobs", type=int, default=2, help="chapters executed at the same time (default 2)")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.chapters] or chapters()
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    try:
        done = execute_stale_chapters(paths, args.jobs)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{len(done)} chapter(s) executed, {len(paths) - len(done)} taken from the cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
