"""Read a submitted notebook, however it arrives, and find each graded function's code in it.

Students' notebooks come through Colab and an LMS: nbgrader metadata or cell ids may be lost,
cells retyped, deleted or duplicated, the file saved as nbformat 3, or not a notebook at all.
`read_cells` never raises on bad input but `SubmissionError` with a sentence for the student;
`locate` finds a function by nbgrader metadata, else by cell id, else by its `def`/`class`
name, and says which way it was found.
"""
from __future__ import annotations

import ast
import json
import pathlib
import re
from dataclasses import dataclass

MAX_NOTEBOOK_BYTES = 64 * 2**20


class SubmissionError(Exception):
    """The submission cannot be graded; the message is for the student."""


@dataclass
class Cell:
    index: int
    kind: str
    source: str
    grade_id: str | None = None
    cell_id: str | None = None
    graded: bool = False  # an nbgrader test cell


def _text(source) -> str:
    if isinstance(source, list):
        return "".join(str(s) for s in source)
    return source if isinstance(source, str) else ""


def read_cells(path: pathlib.Path) -> list[Cell]:
    """The cells of a notebook file, from nbformat 3 or 4, tolerating missing metadata."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise SubmissionError(f"the file cannot be read ({error.strerror})") from None
    if size == 0:
        raise SubmissionError("the file is empty: download the notebook again with File > Download > .ipynb")
    if size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"the notebook is {size / 2**20:.0f} MB; notebooks over "
                              f"{MAX_NOTEBOOK_BYTES // 2**20} MB are not graded: clear the outputs "
                              "(Edit > Clear all outputs) and hand it in again")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError("the file is not text in UTF-8, so it is not a notebook") from None
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmissionError(f"the file is not a valid notebook (JSON error at line {error.lineno}): "
                              "download it again with File > Download > .ipynb") from None
    if not isinstance(notebook, dict):
        raise SubmissionError("the file is JSON but not a notebook")
    if "cells" in notebook and isinstance(notebook["cells"], list):
        raw_cells = notebook["cells"]
        code_key = "source"
    elif isinstance(notebook.get("worksheets"), list):  # nbformat 3
        raw_cells = [c for sheet in notebook["worksheets"] if isinstance(sheet, dict)
                     for c in sheet.get("cells", []) if isinstance(c, dict)]
        code_key = "input"
    else:
        raise SubmissionError("the file is JSON but has no notebook cells")
    cells = []
    for index, cell in enumerate(raw_cells):
        if not isinstance(cell, dict):
            continue
        kind = cell.get("cell_type", "")
        source = _text(cell.get(code_key if kind == "code" else "source", cell.get("source", "")))
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        nbgrader = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        cells.append(Cell(index, kind, source, nbgrader.get("grade_id"),
                          cell.get("id") if isinstance(cell.get("id"), str) else None,
                          bool(nbgrader.get("grade"))))
    return cells


MAGIC = re.compile(r"^(\s*)([!%].*|(?:from\s+google\.colab\b|import\s+google\.colab\b).*)$")


def neutralise(source: str) -> str:
    """Replace shell (`!pip`), magic (`%matplotlib`) and google.colab import lines by `pass`;
    an empty string for a cell magic (`%%capture`)."""
    if source.lstrip().startswith("%%"):
        return ""
    lines = []
    for line in source.splitlines():
        match = MAGIC.match(line)
        lines.append(f"{match.group(1)}pass  # grader: removed {match.group(2)[:40]!r}" if match else line)
    return "\n".join(lines) + "\n"


def defined_names(tree: ast.Module) -> set[str]:
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


@dataclass
class Located:
    name: str
    cell: Cell | None
    how: str  # "nbgrader metadata", "cell id", "function name", or why not found


def locate(cells: list[Cell], name: str, grade_id: str) -> Located:
    """Find the cell that defines graded function `name` (its nbgrader grade_id is `grade_id`)."""
    parsed = {}
    for cell in cells:
        if cell.kind == "code":
            try:
                parsed[cell.index] = defined_names(ast.parse(neutralise(cell.source)))
            except SyntaxError:
                parsed[cell.index] = None
    for how, match in (("nbgrader metadata", lambda c: c.grade_id == grade_id),
                       ("cell id", lambda c: c.cell_id == grade_id)):
        for cell in cells:
            if cell.kind == "code" and match(cell) and not cell.graded:
                if parsed.get(cell.index) is None:
                    return Located(name, cell, how)  # a syntax error: reported when loading
                if name in parsed[cell.index]:
                    return Located(name, cell, how)
    defining = [c for c in cells if c.kind == "code" and parsed.get(c.index) and name in parsed[c.index]]
    if defining:
        return Located(name, defining[-1], "function name")
    return Located(name, None, f"no cell of the notebook defines `{name}`: keep its `def {name}(...)` "
                               "line as it was given")


def statements(cells: list[Cell], located: dict[str, Located]) -> list[dict]:
    """What the worker runs, in notebook order: each cell's imports, definitions and
    assignments (one statement at a time), never its top-level calls; a graded name only from
    the cell that `locate` chose for it. Test cells are left out."""
    chosen = {loc.cell.index: name for name, loc in located.items() if loc.cell is not None}
    graded = set(located)
    found = []
    for cell in cells:
        if cell.kind != "code" or cell.graded:
            continue
        code = neutralise(cell.source)
        try:
            tree = ast.parse(code)
        except SyntaxError as error:
            if cell.index in chosen:
                found.append({"code": f"raise SyntaxError({str(error)!r})\n",
                              "label": f"cell {cell.index + 1}", "defines": chosen[cell.index]})
            continue
        for node in tree.body:
            keep = isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                                     ast.ClassDef, ast.Assign, ast.AnnAssign))
            if not keep:
                continue
            name = getattr(node, "name", None)
            if name in graded and chosen.get(cell.index) != name:
                continue  # another copy of a graded function: the located one counts
            segment = ast.get_source_segment(code, node, padded=True)
            if node.__dict__.get("decorator_list"):
                first = min(d.lineno for d in node.decorator_list)
                segment = "\n".join(code.splitlines()[first - 1:node.end_lineno])
            found.append({"code": segment + "\n", "label": f"cell {cell.index + 1}", "defines": name})
    return found
