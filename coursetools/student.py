"""An assignment notebook filled in as a student fills it: the released notebook, with the
reference's code put into each `# YOUR CODE HERE` region and nothing else changed.

nbgrader's release replaces each `### BEGIN SOLUTION` ... `### END SOLUTION` region of the source
notebook by the stub `# YOUR CODE HERE` / `raise NotImplementedError()`, indented as the region's
first marker. Filling puts the region's lines back in place of its stub, in order, cell by cell.
A released notebook whose stubs do not pair one to one with the source's regions (edited by hand,
or stale) is refused with a message saying where.
"""
from __future__ import annotations

import pathlib
import re

import nbformat

from .config import ROOT

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = re.compile(r"^(?P<indent>[ \t]*)# YOUR CODE HERE\n(?P=indent)raise NotImplementedError\(\)\n?", re.M)


def solution_regions(source: str) -> list[str]:
    """The code of each solution region of a source cell (without the marker lines), in order."""
    regions, current = [], None
    for line in source.splitlines(keepends=True):
        if line.strip() == BEGIN:
            if current is not None:
                raise ValueError(f"{BEGIN} inside another solution region")
            current = []
        elif line.strip() == END:
            if current is None:
                raise ValueError(f"{END} without {BEGIN}")
            regions.append("".join(current))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        raise ValueError(f"a solution region is not closed by {END}")
    return regions


def fill_cell(released: str, source: str) -> str:
    """The released cell with each stub replaced by the source's solution region of the same rank."""
    regions = solution_regions(source)
    stubs = list(STUB.finditer(released))
    if len(stubs) != len(regions):
        raise ValueError(f"{len(stubs)} '# YOUR CODE HERE' stub(s) for {len(regions)} solution region(s)")
    pieces, end = [], 0
    for stub, region in zip(stubs, regions):
        pieces += [released[end:stub.start()], region if stub.group(0).endswith("\n") else region.rstrip("\n")]
        end = stub.end()
    return "".join(pieces) + released[end:]


def filled_notebook(assignment: str, root: pathlib.Path = ROOT) -> nbformat.NotebookNode:
    """assignments/<id>/<id>.ipynb with every solution region of solutions/<id>/<id>.ipynb filled in."""
    released = nbformat.read(root / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    source = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    sources = {cell.get("id"): cell for cell in source.cells}
    filled = 0
    for cell in released.cells:
        original = sources.get(cell.get("id"))
        if cell.cell_type != "code" or original is None or not original.metadata.get("nbgrader", {}).get("solution"):
            continue
        try:
            cell.source = fill_cell(cell.source, original.source)
        except ValueError as error:
            raise ValueError(f"{assignment}: cell {cell.get('id')!r}: {error} (run `make assignments`)") from None
        filled += 1
    if not filled:
        raise ValueError(f"{assignment}: the released notebook has no solution cell to fill")
    return released


def write_filled_notebook(assignment: str, path: pathlib.Path, root: pathlib.Path = ROOT) -> pathlib.Path:
    nbformat.write(filled_notebook(assignment, root), path)
    return path
