"""Class grading into an nbgrader course directory: intake from an LMS zip, parallel grading,
the gradebook through nbgrader's API, feedback without hidden tests, CSV, resuming, manual
grades kept, and nbgrader's own export still working."""
import csv
import json
import subprocess
import sys
import zipfile

import pytest
from nbgrader.api import Gradebook

from autograder import classroom
from coursetools import leaks
from coursetools.release import nbgrader_env
from tests.conftest import ROOT
from tests.test_autograder import ASSIGNMENT, submission

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("class")]


@pytest.fixture(scope="module")
def lms_zip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lms")
    right = submission(folder, name="right.ipynb")
    stub = ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    half = submission(folder, {"environment-report": "def environment_report():\n    return {}\n"}, name="half.ipynb")
    archive = folder / "download.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(right, "alice/Copy of a01-colab.ipynb")           # a folder per student
        bundle.write(stub, "bob_123_456_a01-colab (1).ipynb")          # Canvas-style flat names
        bundle.write(half, "carol/a01-colab.ipynb")
        bundle.writestr("dave_1_2_a01-colab.ipynb", b"{broken")       # an unreadable notebook
        bundle.writestr("../escape.ipynb", b"{}")                      # refused: leaves the course
        bundle.writestr("/etc/absolute.ipynb", b"{}")                  # refused: absolute
        bundle.writestr("carol/notes.txt", b"not a notebook")          # ignored
    return archive


@pytest.fixture(scope="module")
def graded(lms_zip, tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    done = subprocess.run([sys.executable, "-m", "autograder", "class", ASSIGNMENT, str(course), "--zip",
                           str(lms_zip), "-j", "2"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return course, done.stdout


def gradebook_scores(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {s.student.id: s.score for s in gradebook.assignment_submissions(ASSIGNMENT)}


def test_intake_and_scores(graded):
    course, stdout = graded
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["alice", "bob", "carol", "dave"]
    assert not (course.parent / "escape.ipynb").exists() and not (course / "escape.ipynb").exists()
    assert gradebook_scores(course) == {"alice": 10.0, "bob": 0.0, "carol": 6.0, "dave": 0.0}
    assert "4 students, mean score 4.00" in stdout
    assert "refused from the zip: '../escape.ipynb'" in stdout and "'/etc/absolute.ipynb'" in stdout
    assert "flagged: dave: unreadable notebook" in stdout  # what the instructor should look at


def test_csv_results_feedback_and_restored_notebooks(graded):
    course, _ = graded
    with open(course / f"grades-{ASSIGNMENT}.csv") as handle:
        rows = {r["student"]: float(r["score"]) for r in csv.DictReader(handle)}
    assert rows == {"alice": 10.0, "bob": 0.0, "carol": 6.0, "dave": 0.0}
    for student in rows:
        result = json.loads((course / "autograder-results" / ASSIGNMENT / f"{student}.json").read_text())
        assert result["score"] == rows[student]
        assert (course / "autograder-feedback" / ASSIGNMENT / f"{student}.html").exists()
    assert "not a valid notebook" in (course / "autograder-feedback" / ASSIGNMENT / "dave.html").read_text()
    # Feedback may repeat a hidden test's message (that is what messages are for), never its code
    # or a solution.
    shown = [leak for leak in leaks.scan([course / "autograder-feedback"]) if "(message)" not in leak.what]
    assert shown == [], "feedback must not show hidden tests or solutions"
    restored = json.loads((course / "autograded" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    graded_cells = [c for c in restored["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    assert len(graded_cells) == 3


def test_rerun_resumes_keeps_manual_grades_and_nbgrader_export_works(graded, lms_zip):
    course, _ = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade("test-pick-device", ASSIGNMENT, ASSIGNMENT, "bob")
        grade.manual_score = 1.5  # the instructor's decision
        gradebook.db.commit()
    (course / "autograder-results" / ASSIGNMENT / "carol.json").unlink()  # as if interrupted there
    before = {p.name: p.stat().st_mtime_ns for p in (course / "autograder-results" / ASSIGNMENT).glob("*.json")}
    summary = classroom.grade_class(ASSIGNMENT, course, jobs=2, archive=lms_zip, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (course / "autograder-results" / ASSIGNMENT).glob("*.json")}
    assert {k: v for k, v in after.items() if k in before} == before, "unchanged submissions were graded again"
    assert "carol.json" in after
    assert summary["students"] == 4
    assert gradebook_scores(course) == {"alice": 10.0, "bob": 1.5, "carol": 6.0, "dave": 0.0}
    done = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to=export.csv"], cwd=course,
                          env=nbgrader_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(course / "export.csv") as handle:
        exported = {r["student_id"]: float(r["score"]) for r in csv.DictReader(handle)}
    assert exported == {"alice": 10.0, "bob": 1.5, "carol": 6.0, "dave": 0.0}
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--force"], cwd=course,
                          env=nbgrader_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = (course / "feedback" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "10.0 / 10.0" in page or "10 / 10" in page


def test_a_changed_submission_is_regraded_and_the_old_one_kept(graded, tmp_path):
    course, _ = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade("test-pick-device", ASSIGNMENT, ASSIGNMENT, "bob")
        grade.manual_score = 1.5  # the instructor's decision, made before the late submission
        gradebook.db.commit()
    archive = tmp_path / "late.zip"
    better = submission(tmp_path, name="b.ipynb")
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(better, "bob/a01-colab.ipynb")
    summary = classroom.grade_class(ASSIGNMENT, course, jobs=1, archive=archive, progress=False)
    assert summary["students"] == 4
    assert list((course / "submitted" / "bob" / ASSIGNMENT / "previous").glob("*.ipynb"))
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade("test-pick-device", ASSIGNMENT, ASSIGNMENT, "bob")
        assert grade.manual_score == 1.5 and grade.auto_score == 2.0


def test_a_bad_zip_is_refused_in_words(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SystemExit, match="not a readable zip file"):
        classroom.intake(bad, tmp_path / "course", ASSIGNMENT)
