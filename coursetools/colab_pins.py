"""Pin Colab's published runtime: rewrite requirements/colab*.txt from a `pip freeze` of Colab.

    python -m coursetools.colab_pins FREEZE --python 3.13.15 --source "TEXT" [--output FILE]

FREEZE is a `pip-freeze.gpu.txt` of the public repository googlecolab/backend-info (read from
disk: nothing is downloaded); --python is the runtime's Python (its os-info-gpu.txt); --source
says where the file came from (repository, commit, date), and is written into the output's
header. The output (default requirements/colab.txt) pins, at Colab's versions, every package the
course's notebooks and helpers import, the packages that run them in a kernel (ipykernel,
ipywidgets and what they need) and the packages those pull in that Colab has. The CUDA libraries
are left out: Colab takes torch from PyTorch's cu128 index, which this project's machines do not
reach; PyPI's build of the same torch release brings its own.

`coursetools.colab_like` builds its environments from these files: `colab.txt` (the current
runtime) and `colab-2026.01.txt` (the oldest runtime a notebook can still pin in Colab).
"""
from __future__ import annotations

import argparse
import pathlib
import re
import sys

from .config import ROOT

REQUIREMENTS = ROOT / "requirements"
CURRENT = REQUIREMENTS / "colab.txt"
OLDEST = REQUIREMENTS / "colab-2026.01.txt"

#: What the chapters, assignments and helpers import, and what their setup cell installs with.
IMPORTED = (
    "torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "ipython", "ipykernel", "psutil", "pillow",
    "scikit-image", "scipy", "requests", "pycocotools", "pip", "setuptools",
)

#: What runs them, and what they pull in, where Colab has it (a name Colab lacks is skipped).
SUPPORT = (
    # the kernel and the widgets
    "traitlets", "jupyter-client", "jupyter-core", "pyzmq", "tornado", "ipython-genutils", "widgetsnbextension",
    "jupyterlab-widgets", "matplotlib-inline", "debugpy", "nest-asyncio", "backcall", "decorator", "pickleshare",
    "prompt-toolkit", "pygments", "pexpect", "ptyprocess", "parso", "wcwidth", "entrypoints", "platformdirs",
    "packaging", "psutil",
    # widgetsnbextension 3 needs the classic notebook
    "notebook", "notebook-shim", "nbclassic", "jupyter-server", "jupyter-server-terminals", "jupyter-events",
    "nbformat", "nbconvert", "nbclient", "jinja2", "markupsafe", "argon2-cffi", "argon2-cffi-bindings", "cffi",
    "pycparser", "send2trash", "terminado", "prometheus-client", "anyio", "sniffio", "idna", "bleach", "tinycss2",
    "webencodings", "defusedxml", "mistune", "pandocfilters", "beautifulsoup4", "soupsieve", "fastjsonschema",
    "jsonschema", "jsonschema-specifications", "referencing", "rpds-py", "attrs", "jupyterlab-pygments",
    "python-json-logger", "pyyaml", "rfc3339-validator", "rfc3986-validator", "rfc3987-syntax", "lark",
    "websocket-client", "arrow", "fqdn", "isoduration", "jsonpointer", "uri-template", "webcolors", "overrides",
    "h11", "httpcore", "httpx", "certifi", "babel", "tzdata", "types-python-dateutil",
    # torch, torchvision, matplotlib, scikit-image, requests
    "filelock", "fsspec", "jinja2", "networkx", "sympy", "mpmath", "typing-extensions", "contourpy", "cycler",
    "fonttools", "kiwisolver", "pyparsing", "python-dateutil", "six", "imageio", "tifffile", "lazy-loader",
    "charset-normalizer", "urllib3",
)

#: GPU libraries: not pinned (see the module's docstring).
CUDA = re.compile(r"^(nvidia-|cuda-|cupy|triton$)")

LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical(name: str) -> str:
    """A distribution's name as pip compares names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_freeze(text: str) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines of a pip freeze, without local
    version labels (torch==2.11.0+cu128 -> 2.11.0). Lines installed from URLs or paths are left out."""
    versions = {}
    for line in text.splitlines():
        found = LINE.match(line.strip())
        if found:
            versions[canonical(found.group(1))] = found.group(2).split("+")[0]
    return versions


def pins(freeze: dict[str, str]) -> list[str]:
    """The requirement lines: IMPORTED (every one must be in the freeze), then SUPPORT where Colab has it."""
    missing = [name for name in IMPORTED if name not in freeze]
    if missing:
        raise ValueError(f"the freeze has no {', '.join(missing)}: the course's notebooks import "
                         f"{'it' if len(missing) == 1 else 'them'}; is this a pip freeze of a Colab runtime?")
    names = list(dict.fromkeys(IMPORTED + tuple(name for name in SUPPORT if name in freeze)))
    return [f"{name}=={freeze[name]}" for name in names if not CUDA.match(name)]


def render(freeze_text: str, python: str, source: str) -> str:
    if not re.fullmatch(r"3\.\d+\.\d+", python):
        raise ValueError(f"--python must be a full Python version such as 3.13.15, not {python!r}")
    lines = pins(read_freeze(freeze_text))
    imported = len(IMPORTED)
    return "\n".join([
        "# Google Colab's runtime, pinned: generated by `python -m coursetools.colab_pins` (do not edit by hand).",
        f"# source: {source}",
        f"# python: {python}",
        "# The Colab-like environments (coursetools/colab_like.py: the book's execution, the tests) install",
        "# exactly these, with the Python above (or the nearest this machine has), and nothing else but",
        "# what a notebook's setup cell installs. The CUDA libraries are PyPI's (Colab's come from PyTorch's index).",
        "# what the notebooks and the helpers import:",
        *lines[:imported],
        "# what runs them and what they pull in, at Colab's versions:",
        *lines[imported:],
        "",
    ])


def runtime(path: pathlib.Path = CURRENT) -> dict:
    """What a pins file says: {"python": "3.13.15", "source": ..., "pins": {name: version}, "path": path}."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: write it with `python -m coursetools.colab_pins`")
    text = path.read_text()
    header = dict(re.findall(r"^# (python|source): (.+)$", text, flags=re.M))
    if "python" not in header:
        raise ValueError(f"{path} has no '# python: X.Y.Z' line: rewrite it with `python -m coursetools.colab_pins`")
    return {"python": header["python"].strip(), "source": header.get("source", "").strip(),
            "pins": read_freeze(text), "path": path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursetools.colab_pins", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("freeze", type=pathlib.Path, help="a pip-freeze.gpu.txt of googlecolab/backend-info")
    parser.add_argument("--python", required=True, help="the runtime's Python version, e.g. 3.13.15")
    parser.add_argument("--source", required=True,
                        help='where the freeze comes from, e.g. "googlecolab/backend-info pip-freeze.gpu.txt at '
                             'a724079 (2026-08-19)"')
    parser.add_argument("--output", type=pathlib.Path, default=CURRENT, help=f"default {CURRENT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if not args.freeze.is_file():
        parser.error(f"no such file: {args.freeze}")
    try:
        text = render(args.freeze.read_text(), args.python, args.source)
    except ValueError as error:
        parser.error(str(error))
    args.output.write_text(text)
    count = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    print(f"wrote {args.output}: {count} pins, Python {args.python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
