"""The instructor guide's teaching plan against the course: every assignment has a week and a
workload estimate, and the functions it suggests skipping for an undergraduate course carry the
points the hidden suites give them and are called by no other graded function of their notebook."""
import ast
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "book" / "instructor-guide.md").read_text()
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())


def suite_points(assignment: str) -> dict[str, int]:
    """Points per graded function, read from the suite's @pytest.mark.points/function markers."""
    tree = ast.parse((ROOT / "autograder" / "suites" / f"test_{assignment.replace('-', '_')}.py").read_text())
    points: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        marks = {d.func.attr: d.args[0].value for d in node.decorator_list
                 if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.args
                 and isinstance(d.args[0], ast.Constant)}
        if "points" in marks and "function" in marks:
            points[marks["function"]] = points.get(marks["function"], 0) + marks["points"]
    return points


def plan_rows() -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r"^\|[^|\n]*\|[^|\n]*\| (a\d\d-[a-z-]+) \|.*$", GUIDE, re.M)}


def skip_rows() -> list[tuple[str, str, int, int]]:
    return [(m.group(1), m.group(2), int(m.group(3)), int(m.group(4))) for m in
            re.finditer(r"^\| (a\d\d-[a-z-]+) \| `(\w+)`[^|\n]*\| (\d+) of (\d+) \|$", GUIDE, re.M)]


def test_every_assignment_has_a_week_and_an_hour_estimate_said_to_be_an_estimate():
    rows = plan_rows()
    assert sorted(rows) == ASSIGNMENTS
    for assignment, row in rows.items():
        assert re.search(r"\| \d+–\d+ \|$", row), row
    assert "**estimates**" in GUIDE


def test_the_suggested_cuts_match_the_suites():
    rows = skip_rows()
    assert rows, "the guide's table of functions to skip was not found"
    for assignment, function, points, total in rows:
        by_function = suite_points(assignment)
        assert by_function.get(function) == points, (assignment, function, by_function)
        assert sum(by_function.values()) == total, (assignment, by_function)


@pytest.mark.parametrize("assignment,function", [(a, f) for a, f, _, _ in skip_rows()])
def test_a_suggested_cut_is_called_by_no_other_graded_function(assignment, function):
    notebook = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    graded = suite_points(assignment)
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:  # a Colab magic
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in graded and node.name != function:
                called = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                assert function not in called, f"{node.name} uses {function}"
