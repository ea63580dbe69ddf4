"""The reference solution of an assignment as a Python namespace, for the project's tests and
the benchmarks: the code of its source notebook's `imports` cell and solution cells, executed in
order (test cells and demonstrations are left out).

    ref = load_reference("a02-proposals"); ref.box_iou(a, b)
"""
from __future__ import annotations

import linecache
import pathlib
import types

import nbformat

from .config import ROOT


class Reference(types.SimpleNamespace):
    path: pathlib.Path

    def solution_source(self, grade_id: str) -> str:
        """The source of one solution cell, as written in the notebook."""
        return self._sources[grade_id]


def load_reference(assignment: str, root: pathlib.Path = ROOT) -> Reference:
    path = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no source notebook for {assignment!r}: {path}")
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {"__name__": f"reference_{assignment.replace('-', '_')}"}
    sources = {}
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not (meta.get("solution") or meta.get("grade_id") == "imports"):
            continue
        sources[meta["grade_id"]] = cell.source
        filename = f"<{assignment} cell {index} {meta['grade_id']}>"
        linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(True), filename)
        exec(compile(cell.source, filename, "exec"), namespace)
    reference = Reference(**{k: v for k, v in namespace.items() if not k.startswith("__")})
    reference.path = path
    reference._sources = sources
    return reference
