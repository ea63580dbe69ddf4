"""a01-colab through plain nbgrader in a fresh course directory: db, generate_assignment,
autograde, export, for three submissions (the reference, the untouched stub, a half-right one)."""
import csv
import shutil
import subprocess
import sys

import nbformat
import pytest

from coursetools.release import nbgrader_env
from tests.conftest import ROOT
from tests.notebook_grading import student_notebook

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]
ASSIGNMENT = "a01-colab"


def nbgrader(course, *args):
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=nbgrader_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    for student in ("reference", "stub", "half"):
        nbgrader(course, "db", "student", "add", student, f"--last-name={student.title()}", "--first-name=Test")
    nbgrader(course, "db", "assignment", "add", ASSIGNMENT)
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    released = course / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert released.read_bytes() == (ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()
    wrong_report = "def environment_report():\n    return {'python': '2.7'}\n"
    notebooks = {
        "reference": student_notebook(ROOT, ASSIGNMENT),
        "stub": student_notebook(ROOT, ASSIGNMENT, fill=False),
        "half": student_notebook(ROOT, ASSIGNMENT, {"environment-report": wrong_report}),
    }
    for student, nb in notebooks.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")
        (folder / "timestamp.txt").write_text("2026-11-20 12:00:00.000000 UTC")
    nbgrader(course, "autograde", ASSIGNMENT, "--force")
    nbgrader(course, "export", "--to=grades.csv")
    with open(course / "grades.csv") as handle:
        return course, {row["student_id"]: row for row in csv.DictReader(handle)}


def test_scores(graded):
    _, rows = graded
    scores = {student: (float(row["score"]), float(row["max_score"])) for student, row in rows.items()}
    assert scores == {"reference": (10.0, 10.0), "stub": (0.0, 10.0), "half": (6.0, 10.0)}


def test_autograded_notebooks_exist_with_their_test_cells(graded):
    course, _ = graded
    for student in ("reference", "stub", "half"):
        autograded = course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        nb = nbformat.read(autograded, as_version=4)
        tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert len(tests) == 3
        # The hidden tests live in autograder/suites only: nothing hidden to restore or to leak.
        assert all(c.source.startswith("check.") and "HIDDEN" not in c.source for c in tests)
