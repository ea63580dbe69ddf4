"""Notebook hygiene: the shared setup cell, no committed outputs, nbformat 4.5 with cell ids.

    python -m coursetools.notebooks sync    # rewrite every setup cell from _config.yml, strip outputs
    python -m coursetools.notebooks check   # exit 1 and say why if a notebook is not clean
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat

from .config import ROOT, helper_requirement

SETUP_CELL_ID = "setup"

SETUP_TEMPLATE = '''\
# Setup: run this cell first. In Colab it installs the course helpers (odcourse) from the
# course repository; elsewhere it uses the copy installed with the course (see its README).
import importlib, importlib.util, os, subprocess, sys
COURSE_HELPERS = "{requirement}"
_source = os.environ.get("ODCOURSE_INSTALL_FROM")  # a local checkout or pip requirement
_colab = importlib.util.find_spec("google") and importlib.util.find_spec("google.colab")
if not _source and _colab and not importlib.util.find_spec("odcourse"):
    _source = COURSE_HELPERS
if _source:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", _source], check=True)
    importlib.invalidate_caches()
try:
    import odcourse
except ImportError:
    raise ImportError("The course helpers (odcourse) are not installed in this kernel: open the "
                      "notebook in Colab, or run `pip install -e .` in the course repository.") from None
odcourse.setup()'''


def setup_source(root: pathlib.Path = ROOT) -> str:
    """The setup cell every notebook starts with, made from `_config.yml`."""
    return SETUP_TEMPLATE.format(requirement=helper_requirement(root))


def course_notebooks(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """Every committed notebook: chapters, sources and released assignments."""
    found = []
    for folder in ("book", "solutions", "assignments"):
        found += sorted(p for p in (root / folder).rglob("*.ipynb")
                        if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)
    return found


def problems(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    """What is wrong with a committed notebook (empty when it is clean)."""
    nb = nbformat.read(path, as_version=4)
    found = []
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        found.append(f"nbformat {nb.nbformat}.{nb.nbformat_minor}; must be 4.5 (cell ids)")
    for index, cell in enumerate(nb.cells):
        if "id" not in cell:
            found.append(f"cell {index} has no id")
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            found.append(f"cell {index} ({cell.get('id', '?')}) is committed with outputs")
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "code" or first.get("id") != SETUP_CELL_ID:
        found.append(f"the first cell must be the setup cell (a code cell with id {SETUP_CELL_ID!r})")
    elif first.source != setup_source(root):
        found.append("the setup cell is not the one made from _config.yml: run `make notebooks`")
    return found


def sync(path: pathlib.Path, root: pathlib.Path = ROOT) -> bool:
    """Rewrite the setup cell and strip outputs in place; True when the file changed."""
    text = path.read_text()
    nb = nbformat.reads(text, as_version=4)
    nb.nbformat, nb.nbformat_minor = 4, 5
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    if not (nb.cells and nb.cells[0].get("id") == SETUP_CELL_ID):
        cell = nbformat.v4.new_code_cell("")
        cell.id = SETUP_CELL_ID
        nb.cells.insert(0, cell)
    nb.cells[0].source = setup_source(root)
    # The site folds the setup cell's code away (its output, the runtime line, stays visible).
    nb.cells[0].metadata["tags"] = ["hide-input"]
    nbformat.validate(nb)
    new = nbformat.writes(nb) + "\n"
    if new != text:
        path.write_text(new)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursetools.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["sync", "check"])
    parser.add_argument("paths", nargs="*", type=pathlib.Path,
                        help="notebooks (default: every notebook in book/, solutions/, assignments/)")
    args = parser.parse_args(argv)
    paths = args.paths or course_notebooks()
    if args.action == "sync":
        # Released notebooks are regenerated from solutions/ by `make assignments`, not edited.
        for path in paths:
            if "assignments" not in path.resolve().relative_to(ROOT).parts and sync(path):
                print(f"updated {path}")
        return 0
    bad = {path: problems(path) for path in paths}
    bad = {path: found for path, found in bad.items() if found}
    for path, found in bad.items():
        for problem in found:
            print(f"{path}: {problem}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
