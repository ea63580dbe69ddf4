"""Grade a whole class into an nbgrader course directory.

    python -m autograder class <assignment-id> <course-dir> [--zip lms-download.zip] [-j 2]

1. Intake (with --zip): every .ipynb of an LMS download becomes
   submitted/<student>/<id>/<id>.ipynb. The student is the entry's top folder, or the part of a
   flat file name before its first "_" (Canvas-style "<student>_..._name.ipynb"); any file name
   is accepted ("Copy of a01-colab.ipynb", "a01-colab (1).ipynb"). Entries that would leave the
   course directory (absolute paths, "..", links) are refused and listed. A submission that is
   replaced is kept, never overwritten: the old file moves to submitted/<student>/<id>/previous/.
2. Submissions are graded `-j` at a time by a pool of grading processes (each submission in its
   own isolated workers), its results.json kept in autograder-results/<id>/<student>.json with the submission's hash: a
   re-run grades only what changed, so an interrupted run resumes and ends with the same results.
3. The notebook with its nbgrader metadata restored (the released notebook with the student's
   code in its cells) goes to autograded/<student>/<id>/<id>.ipynb, and the scores into
   gradebook.db through nbgrader's API as automatic scores of its test cells: formgrader, export
   and manual grading keep working, and manual scores are never touched.
4. Feedback for each student, autograder-feedback/<id>/<student>.html, explains every test in
   words without hidden inputs; grades-<id>.csv holds the scores, grades-<id>-canvas.csv the
   gradebook's scores (manual grades included) in the format Canvas imports (`lms.py`);
   class-report-<id>.html shows the score distribution, the tests most failed, the flagged
   submissions and the most similar pairs (`classreport.py`); a table closes the run.
"""
from __future__ import annotations

import concurrent.futures
import csv
import datetime
import hashlib
import json
import multiprocessing
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import nbformat

from . import assignment as assignments
from . import classreport, engine, lms
from .notebook import SubmissionError, locate, read_cells
from .result import Result, clean
STUDENT_ID = re.compile(r"[^A-Za-z0-9._@-]+")


def student_id(raw: str) -> str:
    """A safe folder name for a student id taken from an LMS file or folder name."""
    cleaned = STUDENT_ID.sub("-", raw.strip()).strip(".-")
    return cleaned or "unknown"


def intake(archive: pathlib.Path, course: pathlib.Path, assignment: str) -> tuple[list[str], list[str]]:
    """Unpack the notebooks of an LMS zip into nbgrader's submitted/ layout.

    Returns (students taken in, entries refused with the reason)."""
    taken, refused = [], []
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise SystemExit(f"autograder: {archive} is not a readable zip file ({error})")
    with bundle:
        for info in bundle.infolist():
            name = info.filename
            if info.is_dir():
                continue
            parts = pathlib.PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
                refused.append(f"{name!r}: a path outside the course directory")
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                refused.append(f"{name!r}: a symbolic link")
                continue
            if not name.lower().endswith(".ipynb") or parts[-1].startswith("._") or "__MACOSX" in parts:
                continue
            student = student_id(parts[0] if len(parts) > 1 else parts[0].split("_", 1)[0])
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{assignment}.ipynb"
            data = bundle.read(info)
            if target.exists() and target.read_bytes() != data:
                keep = folder / "previous"
                keep.mkdir(exist_ok=True)
                stamp = datetime.datetime.fromtimestamp(target.stat().st_mtime).strftime("%Y%m%d-%H%M%S")
                shutil.move(target, keep / f"{stamp}-{assignment}.ipynb")
            target.write_bytes(data)
            when = datetime.datetime(*info.date_time, tzinfo=datetime.timezone.utc)
            (folder / "timestamp.txt").write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
            canvas_id = lms.canvas_user_id(parts[0]) if len(parts) == 1 else None
            if canvas_id:  # Canvas's download names carry the student's Canvas user ID
                (folder / "lms_user_id.txt").write_text(canvas_id)
            taken.append(student)
    return sorted(set(taken)), refused


def submissions(course: pathlib.Path, assignment: str) -> dict[str, pathlib.Path]:
    """student -> notebook, from submitted/<student>/<id>/ (any .ipynb name there)."""
    found = {}
    for folder in sorted((course / "submitted").glob(f"*/{assignment}")):
        notebooks = sorted(folder.glob("*.ipynb"), key=lambda p: (p.name != f"{assignment}.ipynb", p.name))
        if notebooks:
            found[folder.parent.name] = notebooks[0]
    return found


def restore_metadata(submission: pathlib.Path, assignment: str) -> nbformat.NotebookNode | None:
    """The released notebook (with its nbgrader metadata) holding the student's code in its
    solution cells; None when the submission cannot be read."""
    try:
        cells = read_cells(submission)
    except SubmissionError:
        return None
    spec = assignments.load(assignment)
    by_grade_id = {}
    for name, grade_id in spec.functions.items():
        found = locate(cells, name, grade_id)
        if found.cell is not None:
            by_grade_id[grade_id] = found.cell.source
    template = nbformat.read(spec.release, as_version=4)
    for cell in template.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in by_grade_id:
            cell.source = by_grade_id[grade_id]
    return template


def digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def grade_one(assignment: str, student: str, notebook: pathlib.Path, course: pathlib.Path) -> dict:
    """Grade one submission (unless unchanged since the last run); runs in a grading process of
    the pool, which keeps the reference's worker between submissions."""
    store = course / "autograder-results" / assignment
    store.mkdir(parents=True, exist_ok=True)
    out = store / f"{student}.json"
    fingerprint = digest(notebook)
    if out.exists():
        try:
            previous = json.loads(out.read_text())
            if previous.get("extra", {}).get("submission_sha256") == fingerprint:
                return previous
        except json.JSONDecodeError:
            pass
    graded = engine.grade(assignment, notebook, hide_extra=[course], keep_reference=True)
    graded.extra["submission_sha256"] = fingerprint
    result = graded.to_gradescope()
    partial = store / f".{student}.json.partial"
    partial.write_text(json.dumps(result, indent=2))
    partial.replace(out)  # a run interrupted here leaves the old file or the new one, whole
    return result


def _failed(error: BaseException) -> dict:
    """The result of a submission the grader itself failed on: not stored, so a re-run retries it."""
    return {"score": 0.0, "max_score": 0.0, "tests": [], "extra": {"flags": ["the grader failed on it"]},
            "output": f"the grader failed on this submission ({type(error).__name__}); run the class command again"}


def ensure_assignment(course: pathlib.Path, assignment: str) -> None:
    """Make sure gradebook.db knows the assignment and its test cells (nbgrader's own release)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        try:
            gradebook.find_notebook(assignment, assignment)
            return
        except MissingEntry:
            pass
    from coursetools.release import nbgrader_env

    config = course / "nbgrader_config.py"
    created = not config.exists()
    if created:
        config.write_text("c = get_config()\n")
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
                           f"--CourseDirectory.root={course}",
                           f"--CourseDirectory.source_directory={assignments.load(assignment).source.parent.parent}",
                           f"--CourseDirectory.release_directory={course / 'release'}",
                           f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"],
                          cwd=course, env=nbgrader_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"autograder: nbgrader could not record {assignment} in the gradebook:\n{done.stderr}")


def record(course: pathlib.Path, assignment: str, student: str, result: dict, timestamp: str | None,
           lms_user_id: str | None = None) -> None:
    """Write the automatic scores of one submission into gradebook.db; manual scores stay (and
    keep the formgrader's "needs manual grade" mark as the instructor left it)."""
    from nbgrader.api import Gradebook, MissingEntry

    per_function = Result.from_gradescope(result, assignment).points_by_function()
    functions = assignments.load(assignment).functions
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        known = gradebook.update_or_create_student(student)
        if lms_user_id and not known.lms_user_id:
            known.lms_user_id = lms_user_id
        try:
            gradebook.find_submission(assignment, student)
        except MissingEntry:
            gradebook.add_submission(assignment, student, timestamp=timestamp)
        for name, grade_id in functions.items():
            grade = gradebook.find_grade(f"test-{grade_id}", assignment, assignment, student)
            got, top = per_function.get(name, (0.0, 1.0))
            grade.auto_score = grade.max_score * (got / top if top else 0.0)
            if grade.manual_score is None:
                grade.needs_manual_grade = False
        gradebook.db.commit()


def grade_class(assignment: str, course: pathlib.Path, jobs: int = 2, archive: pathlib.Path | None = None,
                progress=True) -> dict:
    """Grade every submission of `assignment` in `course`; return a summary."""
    course = course.resolve()
    course.mkdir(parents=True, exist_ok=True)
    # nbgrader's Gradebook runs the `alembic` script of the environment it is installed in.
    scripts = str(pathlib.Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    refused = []
    if archive is not None:
        _, refused = intake(archive, course, assignment)
    found = submissions(course, assignment)
    ensure_assignment(course, assignment)
    results = {}
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a convenience
        tqdm = None
    # Each grading process of the pool grades many submissions (each in fresh workers) and keeps
    # the reference's worker: start-up is paid once per process, not once per student.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context) as pool:
        futures = {pool.submit(grade_one, assignment, student, path, course): student
                   for student, path in found.items()}
        done = concurrent.futures.as_completed(futures)
        if progress and tqdm is not None:
            done = tqdm(done, total=len(futures), desc=f"grading {assignment}", unit="student", file=sys.stderr)
        for future in done:
            student = futures[future]
            try:
                results[student] = future.result()
            except Exception as first:  # a grading process failed: try once more, then report it
                try:
                    results[student] = pool.submit(grade_one, assignment, student, found[student], course).result()
                except Exception as error:
                    print(f"autograder: grading {student} failed twice: {first!r}; {error!r}", file=sys.stderr)
                    results[student] = _failed(error)
    rows, flagged = [], {}
    for student in sorted(results):
        result = results[student]
        timestamp_file = found[student].parent / "timestamp.txt"
        timestamp = timestamp_file.read_text().strip() if timestamp_file.exists() else None
        lms_file = found[student].parent / "lms_user_id.txt"
        lms_user_id = lms_file.read_text().strip() if lms_file.exists() else None
        record(course, assignment, student, result, timestamp, lms_user_id)
        restored = restore_metadata(found[student], assignment)
        graded = course / "autograded" / student / assignment
        graded.mkdir(parents=True, exist_ok=True)
        if restored is not None:
            nbformat.write(restored, graded / f"{assignment}.ipynb")
        # Not under feedback/: that folder is nbgrader's (generate_feedback --force replaces it).
        feedback = course / "autograder-feedback" / assignment
        feedback.mkdir(parents=True, exist_ok=True)
        (feedback / f"{student}.html").write_text(Result.from_gradescope(result, assignment).feedback_html(student))
        rows.append({"student": student, "score": result["score"], "max_score": result.get("max_score", 0)})
        flags = result.get("extra", {}).get("flags", [])
        if flags:
            flagged[student] = flags
    with open(course / f"grades-{assignment}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["student", "score", "max_score"])
        writer.writeheader()
        writer.writerows(rows)
    failures = {}
    for result in results.values():
        for test in result["tests"]:
            if test["score"] < test["max_score"]:
                failures[test["name"]] = failures.get(test["name"], 0) + 1
    mean = sum(r["score"] for r in rows) / len(rows) if rows else 0.0
    canvas = lms.write_canvas(course, assignment)
    report = classreport.write(course, assignment)
    return {"students": len(rows), "mean": mean, "failures": failures, "refused": refused, "flagged": flagged,
            "canvas": canvas, "report": report}


def table(summary: dict, assignment: str) -> str:
    lines = [f"{assignment}: {summary['students']} students, mean score {summary['mean']:.2f}"]
    if summary["failures"]:
        lines.append("failures by test:")
        width = max(len(name) for name in summary["failures"])
        for name, count in sorted(summary["failures"].items(), key=lambda item: -item[1]):
            lines.append(f"  {name:<{width}}  {count}")
    for entry in summary["refused"]:
        lines.append(f"refused from the zip: {entry}")
    for student, flags in sorted(summary.get("flagged", {}).items()):
        lines.append(f"flagged: {student}: {clean('; '.join(flags), 500)}")
    if summary.get("canvas"):
        lines.append(f"grades for Canvas's gradebook import: {summary['canvas']}")
    if summary.get("report"):
        lines.append(f"class report: {summary['report']}")
    return "\n".join(lines)
