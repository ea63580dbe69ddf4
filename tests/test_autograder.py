"""The grader's contract on a01-colab: `python -m autograder grade <id> <nb> --json <file>`,
Gradescope's results format, fair scores for right, stub and wrong answers."""
import json
import subprocess
import sys

import nbformat
import pytest

from autograder import engine
from autograder.plugin import Plugin, Session
from autograder.workers import Limits
from tests.conftest import ROOT
from tests.notebook_grading import student_notebook
from tests.test_a01_colab import DIFFERENT_BUT_RIGHT, WRONG, answer

pytestmark = [pytest.mark.slow]
ASSIGNMENT = "a01-colab"
SOURCE = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
RELEASE = ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
FAST = Limits(call_seconds=10)


def submission(tmp_path, answers=None, name=f"{ASSIGNMENT}.ipynb", mutate=None):
    """The released notebook filled with the reference, except `answers` (grade_id -> code);
    `mutate(nb)` may change it further."""
    nb = student_notebook(ROOT, ASSIGNMENT, answers)
    if mutate:
        mutate(nb)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def scores(result):
    by_function = {}
    for test in result["tests"]:
        function = test["tags"][0]
        got, top = by_function.get(function, (0, 0))
        by_function[function] = (got + test["score"], top + test["max_score"])
    return by_function


def test_command_line_contract(tmp_path):
    out = tmp_path / "results" / "results.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", ASSIGNMENT, str(SOURCE), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["score"] == 10 and len(result["tests"]) == 10
    for test in result["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output", "tags"}
        assert test["tags"][0] in ("pick_device", "environment_report", "time_matmul")
    assert "a01-colab.ipynb: 10 / 10" in done.stdout


def test_every_assignment_id_is_known_to_the_command_line():
    """The ids are the solutions' folder names (hyphens only, e.g. a04-roi-pooling), whatever the
    suite files are called."""
    assert engine.known_assignments() == sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())


def test_a_multi_word_id_grades_through_the_command_line(tmp_path):
    notebook = ROOT / "assignments" / "a06-roi-align" / "a06-roi-align.ipynb"
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", "a06-roi-align", str(notebook), "--json",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["score"] == 0 and result["max_score"] == 20 and len(result["tests"]) == 15


def test_unknown_assignment_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", "a99-none", str(SOURCE), "--json",
                           str(tmp_path / "r.json")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "unknown assignment 'a99-none'" in done.stderr
    assert not (tmp_path / "r.json").exists()


def test_released_stub_scores_zero_and_says_not_implemented(tmp_path):
    result = engine.grade(ASSIGNMENT, RELEASE, limits=FAST).to_gradescope()
    assert result["score"] == 0 and result["max_score"] == 10
    assert all("not implemented yet" in t["output"] for t in result["tests"])


ROOTED = pytest.mark.skipif(__import__("os").geteuid() != 0,
                            reason="namespaces, read-only mounts and cgroups need root (CI and graders have it)")


@ROOTED
def test_isolation_held_on_this_machine(tmp_path):
    result = engine.grade(ASSIGNMENT, submission(tmp_path), limits=FAST).to_gradescope()
    assert result["score"] == 10
    isolation = result["extra"]["isolation"]
    assert isolation["network"] is True and isolation["read_only"] is True
    assert str(ROOT / "solutions") in isolation["hidden"] and str(ROOT / "autograder") in isolation["hidden"]


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_wrong_answers_lose_points_on_the_test_that_names_the_mistake(tmp_path, mistake):
    grade_id, code, _, phrase = WRONG[mistake]
    result = engine.grade(ASSIGNMENT, submission(tmp_path, {grade_id: answer(code)}), limits=FAST).to_gradescope()
    function = grade_id.replace("-", "_")
    got = scores(result)
    assert got[function][0] < got[function][1], f"{mistake} kept all its points"
    assert all(g == top for name, (g, top) in got.items() if name != function)
    failed = [t["output"] for t in result["tests"] if t["tags"] == [function] and t["score"] < t["max_score"]]
    assert any(phrase in output for output in failed), failed


def test_right_answers_written_differently_earn_full_marks(tmp_path):
    answers = {k: answer(v) for k, v in DIFFERENT_BUT_RIGHT.items()}
    result = engine.grade(ASSIGNMENT, submission(tmp_path, answers), limits=FAST).to_gradescope()
    assert [t["output"] for t in result["tests"] if t["score"] < t["max_score"]] == []
    assert result["score"] == 10


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a GPU: the CUDA feedback run")
def test_cuda_feedback_run_is_reported_unscored(tmp_path):
    result = engine.grade(ASSIGNMENT, submission(tmp_path), limits=FAST).to_gradescope()
    assert result["score"] == 10
    assert len(result["extra"]["cuda_feedback"]) == 10 and "On CUDA (not scored)" in result["output"]


def test_tests_of_a_function_found_calling_a_banned_name_are_not_run(tmp_path):
    """Such a function earns nothing whatever its tests say, so the grader does not spend their time
    (a11's whole suite, trained models and all, for a submission that calls torchvision's detector)."""
    ran = tmp_path / "banned function's test ran"
    suite = tmp_path / "test_tiny_suite.py"
    suite.write_text(f'''
import pathlib
import pytest


@pytest.mark.function("banned")
@pytest.mark.points(2)
def test_banned_works():
    pathlib.Path({str(ran)!r}).write_text("ran")


@pytest.mark.function("allowed")
@pytest.mark.points(1)
def test_allowed_works():
    pass
''')
    session = Session(student=None, reference=None, not_graded={"banned": "banned was not run: it uses a ban"})
    pytest.main([str(suite), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-W", "ignore"],
                plugins=[Plugin(session)])
    assert not ran.exists()
    outcomes = {o.function: o for o in session.outcomes}
    assert not outcomes["banned"].passed and "was not run" in outcomes["banned"].output
    assert outcomes["banned"].max_score == 2.0 and not outcomes["banned"].ran
    assert outcomes["allowed"].passed
