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
    solution: bool = False  # an nbgrader solution cell (where the student writes)


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
    except (RecursionError, MemoryError, ValueError):
        raise SubmissionError("the file is not a notebook (its JSON is nested too deeply or is too large to read): "
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
        grade_id = nbgrader.get("grade_id") if isinstance(nbgrader.get("grade_id"), str) else None
        cells.append(Cell(index, kind if isinstance(kind, str) else "", source, grade_id,
                          cell.get("id") if isinstance(cell.get("id"), str) else None,
                          bool(nbgrader.get("grade")), bool(nbgrader.get("solution"))))
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


def parse(source: str) -> ast.Module | None:
    """The syntax tree of a cell's code, or None when it cannot be read: a syntax error, a NUL
    or a lone surrogate, or nesting too deep for the parser (200,000 unary minus signs)."""
    if len(source) > MAX_CELL_CHARACTERS:
        return None
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError, UnicodeError, OverflowError):
        return None


MAX_CELL_CHARACTERS = 256 * 1024


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
            tree = parse(neutralise(cell.source))
            parsed[cell.index] = defined_names(tree) if tree is not None else None
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


def statements(cells: list[Cell], located: dict[str, Located], refused: set = frozenset(),
               course_code: set = frozenset()) -> list[dict]:
    """What the worker runs, in notebook order: each cell's imports, definitions and
    assignments (one statement at a time), never its top-level calls; a graded name only from
    the cell that `locate` chose for it. Test cells and `refused` cells (screening) are left out.

    Each statement: {"code", "label", "cell", "defines" (the graded name it defines, or None),
    "binds" (top-level names it binds), "fills" (names whose item or attribute it sets: `T[k] = v`),
    "uses" (names it reads), "runs_code" (False for
    definitions, imports and literal assignments), "course_code" (from a `course_code` cell: the
    released notebook's own code, unchanged)}."""
    chosen = {loc.cell.index: name for name, loc in located.items() if loc.cell is not None}
    graded = set(located)
    found = []
    for cell in cells:
        if cell.kind != "code" or cell.graded or cell.index in refused:
            continue
        code = neutralise(cell.source)
        tree = parse(code)
        if tree is None:
            if cell.index in chosen:
                found.append({"code": "raise SyntaxError('the cell cannot be read')\n", "label": f"cell {cell.index + 1}",
                              "cell": cell.index, "defines": chosen[cell.index], "binds": [chosen[cell.index]],
                              "fills": [], "uses": [], "runs_code": False, "course_code": False})
            continue
        lines = code.splitlines()
        for node in tree.body:
            keep = isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                                     ast.ClassDef, ast.Assign, ast.AnnAssign))
            if not keep:
                continue
            name = getattr(node, "name", None)
            if name in graded and chosen.get(cell.index) != name:
                continue  # another copy of a graded function: the located one counts
            segment = ast.get_source_segment(code, node, padded=True)
            if getattr(node, "decorator_list", None):
                first = min(d.lineno for d in node.decorator_list)
                segment = "\n".join(lines[first - 1:node.end_lineno])
            found.append({"code": segment + "\n", "label": f"cell {cell.index + 1}", "cell": cell.index,
                          "defines": name if name in graded else None, "binds": sorted(_binds(node, False)),
                          "fills": sorted(_binds(node, True) - _binds(node, False)),
                          "uses": sorted(_uses(node)), "runs_code": _runs_code(node),
                          "course_code": cell.index in course_code})
    return found


def _binds(node, fills: bool) -> set[str]:
    """The top-level names a statement binds, and with `fills` also those it fills (T[k] = v)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Import):
        return {a.asname or a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {a.asname or a.name for a in node.names}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = set()
    for target in targets:
        while isinstance(target, ast.Starred):
            target = target.value
        if isinstance(target, (ast.Subscript, ast.Attribute)) and not fills:
            continue
        while isinstance(target, (ast.Subscript, ast.Attribute)):
            target = target.value  # `TABLE[k] = v` and `OBJ.x = v` fill TABLE and OBJ
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def _uses(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _runs_code(node) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False
    if node.value is None:
        return False
    try:
        ast.literal_eval(node.value)
        return False
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return True
