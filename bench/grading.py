"""Grade one generated class with this project's engine and with plain `nbgrader autograde`,
and print seconds per submission for each and their ratio.

    .venv/bin/python bench/grading.py [--students 100] [-j 2] [--engine-only]

The class mixes right, half-right, untouched and unreadable a01-colab notebooks (a quarter of
each). Both graders run on the same machine in the same run: the engine as
`python -m autograder class a01-colab <course> -j J`, nbgrader as `nbgrader autograde a01-colab`
on the same submissions in its own course directory. After the engine's run the script checks
that every student's gradebook score, CSV row, results.json and feedback page are there and
right (it exits non-zero otherwise); `--engine-only` skips nbgrader (CI runs it so). Either way it
then times the whole `python -m autograder grade` command on a02-proposals's reference notebook
(one student's notebook through the hidden suite, the fork server's start included; goal: 12 s).
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from coursetools.release import nbgrader_env  # noqa: E402
from tests.notebook_grading import student_notebook  # noqa: E402

ASSIGNMENT = "a01-colab"
ONE_NOTEBOOK = "a02-proposals"
ONE_NOTEBOOK_GOAL_SECONDS = 12.0


def notebooks() -> dict[str, bytes]:
    filled = lambda answers=None, fill=True: nbformat.writes(  # noqa: E731
        student_notebook(ROOT, ASSIGNMENT, answers, fill)).encode()
    wrong = "def environment_report():\n    return {}\n"
    return {"right": filled(), "half": filled({"environment-report": wrong}), "stub": filled(fill=False),
            "broken": b"{not a notebook"}


EXPECTED = {"right": 10.0, "half": 6.0, "stub": 0.0, "broken": 0.0}


def make_class(course: pathlib.Path, students: int) -> dict[str, float]:
    """Write the class's submissions; return each student's expected score."""
    kinds = notebooks()
    order = list(kinds)
    expected = {}
    for index in range(students):
        kind = order[index % len(order)]
        folder = course / "submitted" / f"s{index:03d}" / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{ASSIGNMENT}.ipynb").write_bytes(kinds[kind])
        expected[f"s{index:03d}"] = EXPECTED[kind]
    return expected


def verify(course: pathlib.Path, expected: dict[str, float]) -> None:
    """Gradebook, CSV, results.json and feedback of every student agree with `expected`."""
    import csv
    import json

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        in_gradebook = {s.student.id: s.score for s in gradebook.assignment_submissions(ASSIGNMENT)}
    with open(course / f"grades-{ASSIGNMENT}.csv") as handle:
        in_csv = {row["student"]: float(row["score"]) for row in csv.DictReader(handle)}
    in_results = {p.stem: json.loads(p.read_text())["score"]
                  for p in (course / "autograder-results" / ASSIGNMENT).glob("*.json")}
    feedback = {p.stem for p in (course / "autograder-feedback" / ASSIGNMENT).glob("*.html")}
    problems = [name for name, found in (("gradebook", in_gradebook), ("CSV", in_csv), ("results", in_results))
                if found != expected]
    if feedback != set(expected):
        problems.append("feedback")
    if problems:
        wrong = {name: (expected.get(name), in_results.get(name)) for name in sorted(set(expected) | set(in_results))
                 if expected.get(name) != in_results.get(name)}
        examples = "; ".join(f"{name}: expected {want}, got {got}" for name, (want, got) in list(wrong.items())[:5])
        raise SystemExit(f"the engine's class results are wrong in: {', '.join(problems)} ({examples})")
    print(f"verified: {len(expected)} students: gradebook, CSV, results.json and feedback agree")


def run(command, cwd, failing_submissions_ok=False) -> float:
    """Seconds `command` took. nbgrader autograde exits 1 when any submission could not be
    processed (the unreadable ones here), after grading all the others: that is expected."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=nbgrader_env(), capture_output=True, text=True)
    if done.returncode != 0 and not (failing_submissions_ok and "There was an error processing" in done.stderr):
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-3000:]}")
    for line in done.stderr.splitlines():
        if line.startswith("autograder:"):  # what the grader itself reported (e.g. a retried failure)
            print(line)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--engine-only", action="store_true", help="grade and verify with the engine only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        ours, theirs = scratch / "engine", scratch / "nbgrader"
        for course in (ours, theirs):
            course.mkdir()
            expected = make_class(course, args.students)
        engine_seconds = run([sys.executable, "-m", "autograder", "class", ASSIGNMENT, str(ours), "-j",
                              str(args.jobs)], ROOT)
        verify(ours, expected)
        if args.engine_only:
            print(f"engine (python -m autograder class, -j {args.jobs}): "
                  f"{engine_seconds / args.students:.2f} s per submission")
            one_notebook(scratch)
            return
        shutil.copy(ROOT / "nbgrader_config.py", theirs)
        shutil.copytree(ROOT / "solutions" / ASSIGNMENT, theirs / "solutions" / ASSIGNMENT)
        roster = theirs / "students.csv"
        roster.write_text("id\n" + "".join(f"s{index:03d}\n" for index in range(args.students)))
        run([sys.executable, "-m", "nbgrader", "db", "student", "import", str(roster)], theirs)
        run([sys.executable, "-m", "nbgrader", "db", "assignment", "add", ASSIGNMENT], theirs)
        run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"], theirs)
        nbgrader_seconds = run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"], theirs,
                               failing_submissions_ok=True)
    per_engine = engine_seconds / args.students
    per_nbgrader = nbgrader_seconds / args.students
    print(f"{args.students} submissions of {ASSIGNMENT} (right, half-right, untouched, unreadable)")
    print(f"engine (python -m autograder class, -j {args.jobs}): {per_engine:.2f} s per submission")
    print(f"plain nbgrader autograde:                 {per_nbgrader:.2f} s per submission")
    print(f"ratio engine / nbgrader: {per_engine / per_nbgrader:.2f}")
    with tempfile.TemporaryDirectory() as scratch:
        one_notebook(pathlib.Path(scratch))


def one_notebook(scratch: pathlib.Path) -> None:
    notebook = ROOT / "solutions" / ONE_NOTEBOOK / f"{ONE_NOTEBOOK}.ipynb"
    seconds = run([sys.executable, "-m", "autograder", "grade", ONE_NOTEBOOK, str(notebook), "--json",
                   str(scratch / "results.json")], ROOT)
    print(f"one {ONE_NOTEBOOK} notebook (python -m autograder grade, whole command): {seconds:.1f} s "
          f"(goal: {ONE_NOTEBOOK_GOAL_SECONDS:.0f} s)")


if __name__ == "__main__":
    main()
