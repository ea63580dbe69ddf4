"""Grading proofs shared by the assignments' tests: grade the released notebook filled with the
reference, except for given answers, through the real grader, and read the scores per function."""
from __future__ import annotations

import textwrap

import nbformat

from autograder import engine
from autograder import assignment as assignments
from autograder.workers import Limits
from tests.conftest import ROOT
from tests.notebook_grading import student_notebook

FAST = Limits(call_seconds=20)


def answer(code: str) -> str:
    return textwrap.dedent(code).strip() + "\n"


def submission(assignment: str, folder, answers: dict | None = None, name: str | None = None, mutate=None):
    """The released notebook filled with the reference except `answers` (grade_id -> code),
    written to folder/name; `mutate(nb)` may change it further."""
    nb = student_notebook(ROOT, assignment, answers)
    if mutate:
        mutate(nb)
    path = folder / (name or f"{assignment}.ipynb")
    nbformat.write(nb, path)
    return path


def grade(assignment: str, folder, answers: dict | None = None, only: set | None = None) -> dict:
    """Gradescope's results.json of the released notebook filled with the reference but `answers`."""
    answers = {k: answer(v) for k, v in (answers or {}).items()}
    return engine.grade(assignment, submission(assignment, folder, answers), limits=FAST, only=only).to_gradescope()


def scores(result: dict) -> dict[str, tuple[float, float]]:
    """{function: (points earned, points possible)}."""
    by_function: dict[str, tuple[float, float]] = {}
    for test in result["tests"]:
        function = test["tags"][0]
        got, top = by_function.get(function, (0.0, 0.0))
        by_function[function] = (got + test["score"], top + test["max_score"])
    return by_function


def assert_mistake_is_named(assignment: str, folder, grade_id: str, code: str, phrase: str,
                            dependents=()) -> None:
    """A wrong answer for one function loses points there, on a test whose output contains
    `phrase`. Only that function's tests run (and those of `dependents`, functions that call it
    as the assignment asks, which may lose points too): every other function is the reference's
    own code, whose full marks tests/test_colab_like.py proves."""
    function = assignments.load(assignment).function_of(grade_id)
    result = grade(assignment, folder, {grade_id: code}, only={function, *dependents})
    got = scores(result)
    assert got[function][0] < got[function][1], f"the wrong answer kept all its points: {result['tests']}"
    assert set(got) == {function, *dependents}, got
    failed = [t["output"] for t in result["tests"] if t["tags"] == [function] and t["score"] < t["max_score"]]
    assert any(phrase in output for output in failed), failed


def assert_full_marks(assignment: str, folder, answers: dict) -> None:
    result = grade(assignment, folder, answers)
    failed = [t["output"] for t in result["tests"] if t["score"] < t["max_score"]]
    assert failed == [], failed
    assert result["score"] == result["max_score"] > 0
