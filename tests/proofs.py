"""Grading proofs shared by the assignments' tests: grade the released notebook filled with the
reference, except for given answers, through the real grader, and read the scores per function."""
from __future__ import annotations

import ast
import functools
import re
import textwrap

import nbformat

from autograder import engine
from autograder import assignment as assignments
from autograder.workers import Limits
from coursetools.reference import load_reference
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


def grade(assignment: str, folder, answers: dict | None = None, only: set | None = None,
          skip_tests: frozenset = frozenset()) -> dict:
    """Gradescope's results.json of the released notebook filled with the reference but `answers`."""
    answers = {k: answer(v) for k, v in (answers or {}).items()}
    return engine.grade(assignment, submission(assignment, folder, answers), limits=FAST, only=only,
                        skip_tests=skip_tests).to_gradescope()


def scores(result: dict) -> dict[str, tuple[float, float]]:
    """{function: (points earned, points possible)}."""
    by_function: dict[str, tuple[float, float]] = {}
    for test in result["tests"]:
        function = test["tags"][0]
        got, top = by_function.get(function, (0.0, 0.0))
        by_function[function] = (got + test["score"], top + test["max_score"])
    return by_function


def assert_full_marks(assignment: str, folder, answers: dict) -> None:
    result = grade(assignment, folder, answers)
    failed = [t["output"] for t in result["tests"] if t["score"] < t["max_score"]]
    assert failed == [], failed
    assert result["score"] == result["max_score"] > 0


# Wrong answers graded together ----------------------------------------------------------------
# One grading per wrong answer costs a notebook load and a worker each (CI's time is short): the
# mistakes are graded in groups in which no function can see another's mistake, so that each
# function's tests see its own mistake only, as they would graded alone.
#
# A mistake: (grade_id, code, phrase, dependents), its answer cell's code, a phrase a failed test of
# its function must say, and the functions that call it as the assignment asks (which may lose
# points with it, and whose tests run too).

def _named(text: str, names) -> set[str]:
    return {name for name in names if re.search(rf"(?<!\w){re.escape(name)}\b", text)}


@functools.lru_cache(maxsize=None)
def defined_names(assignment: str) -> dict[str, frozenset[str]]:
    """{function: the names its reference cell defines at top level (the function and its helpers)}."""
    spec = assignments.load(assignment)
    reference = load_reference(assignment)
    names = {}
    for function in spec.functions:
        found = {function}
        for node in ast.parse(reference.solution_source(spec.grade_id(function))).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        names[function] = frozenset(found)
    return names


def named_functions(assignment: str, text: str) -> set[str]:
    """The graded functions whose cells' names `text` names."""
    return {f for f, names in defined_names(assignment).items() if _named(text, names)}


@functools.lru_cache(maxsize=None)
def uses(assignment: str) -> dict[str, frozenset[str]]:
    """{function: the other graded functions its tests may call}: those whose names (or their
    cells' helpers') its reference cell names, or its hidden tests (and the suite's helpers they
    name), and theirs in turn."""
    spec = assignments.load(assignment)
    reference = load_reference(assignment)
    helpers = suite_functions(assignment)
    direct = {f: named_functions(assignment, reference.solution_source(spec.grade_id(f))) for f in spec.functions}
    for name, tag in suite_tests(assignment).items():
        if tag not in direct:
            continue
        seen, todo = set(), [name]
        while todo:  # the test and every helper of the suite it reaches
            name = todo.pop()
            seen.add(name)
            todo += [h for h in _named(helpers[name], helpers) if h not in seen]
        direct[tag] |= named_functions(assignment, "\n".join(helpers[name] for name in seen))
    closed = {}
    for function in spec.functions:
        reach, todo = set(), [function]
        while todo:
            for used in direct[todo.pop()] - reach - {function}:
                reach.add(used)
                todo.append(used)
        closed[function] = frozenset(reach)
    return closed


@functools.lru_cache(maxsize=None)
def suite_functions(assignment: str) -> dict[str, str]:
    """{name: source} of the hidden suite's top-level functions (its tests and its helpers)."""
    suite = assignments.load(assignment).suite.read_text()
    return {node.name: ast.get_source_segment(suite, node) for node in ast.parse(suite).body
            if isinstance(node, ast.FunctionDef)}


@functools.lru_cache(maxsize=None)
def suite_tests(assignment: str) -> dict[str, str]:
    """{test name: the graded function it tests} of the hidden suite."""
    suite = assignments.load(assignment).suite.read_text()
    return {node.name: function_tag(node) for node in ast.parse(suite).body if function_tag(node)}


def function_tag(node) -> str | None:
    """The function a suite test is graded for: its @pytest.mark.function("name")."""
    for decorator in getattr(node, "decorator_list", []):
        if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "function" and decorator.args
                and isinstance(decorator.args[0], ast.Constant)):
            return decorator.args[0].value
    return None


def graded_together(assignment: str, wrong: dict, apart=()) -> list[list[str]]:
    """The mistakes of `wrong` in groups, one grading each. In a group, at most one mistake per
    function, and no function whose tests may see another member's mistake: none uses another's
    function (uses(), or the wrong code names it) or is among its dependents. The mistakes `apart`
    (the slow ones: the loops the speed checks stop) each start a group of their own."""
    spec = assignments.load(assignment)
    function = {m: spec.function_of(wrong[m][0]) for m in wrong}
    reach = {m: uses(assignment)[function[m]] | named_functions(assignment, wrong[m][1]) | set(wrong[m][3])
             for m in wrong}

    def apart_from(m, n) -> bool:
        return function[m] != function[n] and function[n] not in reach[m] and function[m] not in reach[n]

    groups: list[list[str]] = [[mistake] for mistake in apart]
    for mistake in sorted(set(wrong) - set(apart)):
        for group in groups:
            if all(apart_from(mistake, other) for other in group):
                group.append(mistake)
                break
        else:
            groups.append([mistake])
    return groups


@functools.lru_cache(maxsize=None)
def timed_tests(assignment: str) -> dict[str, frozenset[str]]:
    """{function: the names of its hidden tests that time it (those calling expect_fast)}."""
    timed: dict[str, set[str]] = {}
    for name, function in suite_tests(assignment).items():
        if "expect_fast(" in suite_functions(assignment)[name]:
            timed.setdefault(function, set()).add(name)
    return {function: frozenset(names) for function, names in timed.items()}


def assert_mistakes_are_named(assignment: str, folder, wrong: dict, mistakes: list[str], timed=()) -> None:
    """The mistakes of one group graded in one notebook: each loses points on its function, on a
    test whose output contains its phrase. Only the tests of their functions and dependents run:
    every other function is the reference's own code, whose full marks tests/test_colab_like.py proves.
    A function's speed tests (those calling expect_fast) run only for the mistakes in `timed`: the
    slow answers they are there to stop, and the mistakes a speed test that checks more (empty
    inputs, say) names. Each costs seconds to a quarter of a minute on large inputs, and for any other
    mistake they would only repeat what the function's other tests say. The right answers' proofs
    run them all."""
    assert set(timed) <= set(wrong), f"not mistakes of the table: {set(timed) - set(wrong)}"
    spec = assignments.load(assignment)
    answers = {wrong[m][0]: wrong[m][1] for m in mistakes}
    assert len(answers) == len(mistakes), f"two mistakes of one group in the same cell: {mistakes}"
    functions = {spec.function_of(wrong[m][0]) for m in mistakes}
    dependents = {d for m in mistakes for d in wrong[m][3]}
    speed = {spec.function_of(wrong[m][0]) for m in mistakes if m in timed}
    skip = frozenset(t for f, tests in timed_tests(assignment).items() if f not in speed for t in tests)
    result = grade(assignment, folder, answers, only=functions | dependents, skip_tests=skip)
    got = scores(result)
    assert set(got) == functions | dependents, got
    problems = []
    for mistake in mistakes:
        grade_id, _, phrase, _ = wrong[mistake]
        function = spec.function_of(grade_id)
        failed = [t["output"] for t in result["tests"] if t["tags"] == [function] and t["score"] < t["max_score"]]
        if got[function][0] >= got[function][1]:
            problems.append(f"{mistake}: the wrong answer kept all its points: {result['tests']}")
        elif not any(phrase in output for output in failed):
            problems.append(f"{mistake}: no failed test of {function} says {phrase!r}: {failed}")
    assert problems == [], "\n".join(problems)
