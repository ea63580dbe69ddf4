"""Run a notebook's graded cells in this process, as nbgrader's autograde would run them.

For the project's proofs about an assignment (the reference passes, the stub scores zero,
plausible wrong implementations fail the test that names their mistake). Student code is only
ever the course's own reference or the wrong implementations written in tests/.
"""
from __future__ import annotations

import linecache
import pathlib
from dataclasses import dataclass

import nbformat


@dataclass
class Outcome:
    passed: bool
    message: str
    points: float


def grade_ids(nb) -> dict[str, nbformat.NotebookNode]:
    return {cell.metadata["nbgrader"]["grade_id"]: cell for cell in nb.cells
            if "nbgrader" in cell.metadata and "grade_id" in cell.metadata["nbgrader"]}


def run_graded_cells(path: pathlib.Path, replace: dict[str, str] | None = None) -> dict[str, Outcome]:
    """Execute the setup cell and every nbgrader cell of `path` in order; return test outcomes.

    `replace` maps a solution cell's grade_id to the code to run instead (a student's answer).
    Cells that are neither the setup cell nor nbgrader cells (demonstrations) are skipped.
    """
    nb = nbformat.read(path, as_version=4)
    replace = dict(replace or {})
    namespace: dict = {"__name__": "__main__"}
    outcomes: dict[str, Outcome] = {}
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not (cell.get("id") == "setup" or meta):
            continue
        grade_id = meta.get("grade_id", cell.get("id"))
        source = replace.pop(grade_id, cell.source)
        # Register the code so that inspect.getsource works on functions it defines, as in IPython.
        filename = f"<cell {index} {grade_id} {id(namespace)}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec"), namespace)
            error = None
        except Exception as raised:  # a failing test cell, or a broken answer
            error = f"{type(raised).__name__}: {raised}"
        if meta.get("grade"):
            outcomes[grade_id] = Outcome(error is None, error or "", meta.get("points", 0) if error is None else 0)
    if replace:
        raise KeyError(f"no cells with grade_id {sorted(replace)} in {path}")
    return outcomes


def student_notebook(root: pathlib.Path, assignment: str, answers: dict | None = None, fill: bool = True):
    """The released notebook as a student would hand it in: its solution cells filled from the
    reference (when `fill`), except those `answers` gives (grade_id -> code)."""
    nb = nbformat.read(root / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    reference = {c.metadata["nbgrader"]["grade_id"]: c.source
                 for c in nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4).cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in (answers or {}):
            cell.source = answers[grade_id]
        elif fill and grade_id in reference:
            cell.source = reference[grade_id]
    return nb
