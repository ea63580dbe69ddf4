"""An assignment, as the grader knows it: its id, its notebooks, its hidden suite and what the
suite declares. The one owner of these paths and facts; everything else asks it.

A hidden suite (autograder/suites/test_<id>.py) declares, as literals read without importing it
(importing would evaluate its pytest marks outside the session that runs it):
    FUNCTIONS = {"box_iou": "box-iou", ...}         graded function -> nbgrader grade id
    BANNED = {"box_iou": ["torchvision.ops", "torchvision::nms"], ...}
                                                    names (modules, callables) and operators ("::")
                                                    that would skip the exercise; "!name" allows
                                                    name inside a banned module
    HELPERS_ALLOWED = ["odcourse.proposals.oversegment"]   helpers of the course package it hands out
    BUDGET_SECONDS = 600                            a whole grading's time budget (optional)
A list named earlier in the file, and `+` of lists, may appear in BANNED.
"""
from __future__ import annotations

import ast
import functools
import pathlib
from dataclasses import dataclass

from .worker.recording import ALLOW, OPERATOR

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUITES = pathlib.Path(__file__).resolve().parent / "suites"
HELPER_PACKAGE = "odcourse"
DEFAULT_BUDGET_SECONDS = 600.0


class UnknownAssignment(KeyError):
    """No hidden suite has this id."""


@dataclass(frozen=True, eq=False)  # one object per id (load caches it): hashed by identity
class Assignment:
    id: str
    root: pathlib.Path
    functions: dict  # graded function -> nbgrader grade id
    banned: dict  # graded function -> banned names (modules, callables; "!name" exceptions)
    operators: dict  # graded function -> banned operators ("torchvision::nms", "torchvision::*")
    helpers_allowed: tuple
    budget_seconds: float

    @property
    def source(self) -> pathlib.Path:
        """The reference solution with its visible tests (nbgrader's source notebook)."""
        return self.root / "solutions" / self.id / f"{self.id}.ipynb"

    @property
    def release(self) -> pathlib.Path:
        """The notebook students get (nbgrader's release, generated from the source)."""
        return self.root / "assignments" / self.id / f"{self.id}.ipynb"

    @property
    def suite(self) -> pathlib.Path:
        return suite_path(self.id)

    @property
    def allowed(self) -> list[str]:
        return [ALLOW + name for name in self.helpers_allowed]

    def grade_id(self, function: str) -> str:
        return self.functions[function]

    def function_of(self, grade_id: str) -> str:
        return {g: name for name, g in self.functions.items()}[grade_id]


def suite_path(assignment_id: str) -> pathlib.Path:
    # Assignment ids have hyphens (a04-roi-pooling); their suites' file names have underscores.
    return SUITES / f"test_{assignment_id.replace('-', '_')}.py"


def known(root: pathlib.Path = ROOT) -> list[str]:
    return sorted(p.stem.removeprefix("test_").replace("_", "-") for p in SUITES.glob("test_a*.py"))


@functools.lru_cache(maxsize=None)
def load(assignment_id: str, root: pathlib.Path = ROOT) -> Assignment:
    """The assignment with this id (UnknownAssignment if there is none), its suite read once."""
    path = suite_path(assignment_id)
    if assignment_id not in known(root) or not path.exists():
        raise UnknownAssignment(assignment_id)
    values = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = _literal(node.value, values)
            except ValueError:
                if node.targets[0].id in ("FUNCTIONS", "BANNED", "HELPERS_ALLOWED", "BUDGET_SECONDS"):
                    raise
    functions = dict(values["FUNCTIONS"])
    declared = values.get("BANNED", {})
    helpers = tuple(values.get("HELPERS_ALLOWED", []))
    banned, operators = {}, {}
    for name in functions:
        entries = list(declared.get(name, []))
        # The course's helper package wraps the very operations students write (chapter 3's ridge
        # regression, chapter 5's anchors...): no graded function may use it, but for the helpers
        # an assignment hands out (HELPERS_ALLOWED, e.g. a02's over-segmentation).
        names = [e for e in entries if OPERATOR not in e] + [HELPER_PACKAGE] + [ALLOW + h for h in helpers]
        ops = [e for e in entries if OPERATOR in e]
        if any(n in ("torchvision", "torchvision.ops") for n in names):
            ops.append("torchvision::*")  # torchvision's operators are what torchvision.ops runs
        banned[name] = tuple(dict.fromkeys(names))
        operators[name] = tuple(dict.fromkeys(ops))
    return Assignment(assignment_id, root, functions, banned, operators, helpers,
                      float(values.get("BUDGET_SECONDS", DEFAULT_BUDGET_SECONDS)))


def _literal(node, known_values: dict):
    """A literal, where names of earlier literals and `+` of lists may appear."""
    if isinstance(node, ast.Name) and node.id in known_values:
        return known_values[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left, known_values), _literal(node.right, known_values)
        if isinstance(left, list) and isinstance(right, list):
            return left + right
        raise ValueError("only lists may be added")
    if isinstance(node, ast.List):
        return [_literal(element, known_values) for element in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k, known_values): _literal(v, known_values) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)
