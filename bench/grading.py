"""Grade one generated class with this project's engine and with plain `nbgrader autograde`,
and print seconds per submission for each and their ratio.

    .venv/bin/python bench/grading.py [--students 100] [-j 2]

The class mixes right, half-right, untouched and unreadable a01-colab notebooks (a quarter of
each). Both graders run on the same machine in the same run: the engine as
`python -m autograder class a01-colab <course> -j J`, nbgrader as `nbgrader autograde a01-colab`
on the same submissions in its own course directory.
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

ASSIGNMENT = "a01-colab"


def notebooks(folder: pathlib.Path) -> dict[str, bytes]:
    release = nbformat.read(ROOT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    reference = {c.metadata["nbgrader"]["grade_id"]: c.source
                 for c in nbformat.read(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4).cells
                 if c.metadata.get("nbgrader", {}).get("solution")}

    def filled(skip=()):
        nb = nbformat.from_dict(release)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in reference and grade_id not in skip:
                cell.source = reference[grade_id]
        return nbformat.writes(nb).encode()

    return {"right": filled(), "half": filled(skip=("environment-report",)),
            "stub": nbformat.writes(release).encode(), "broken": b"{not a notebook"}


def make_class(course: pathlib.Path, students: int) -> None:
    kinds = notebooks(course)
    order = list(kinds)
    for index in range(students):
        folder = course / "submitted" / f"s{index:03d}" / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{ASSIGNMENT}.ipynb").write_bytes(kinds[order[index % len(order)]])


def run(command, cwd) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=nbgrader_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        ours, theirs = scratch / "engine", scratch / "nbgrader"
        for course in (ours, theirs):
            course.mkdir()
            make_class(course, args.students)
        engine_seconds = run([sys.executable, "-m", "autograder", "class", ASSIGNMENT, str(ours), "-j",
                              str(args.jobs)], ROOT)
        shutil.copy(ROOT / "nbgrader_config.py", theirs)
        shutil.copytree(ROOT / "solutions" / ASSIGNMENT, theirs / "solutions" / ASSIGNMENT)
        for index in range(args.students):
            run([sys.executable, "-m", "nbgrader", "db", "student", "add", f"s{index:03d}"], theirs)
        run([sys.executable, "-m", "nbgrader", "db", "assignment", "add", ASSIGNMENT], theirs)
        run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"], theirs)
        nbgrader_seconds = run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"], theirs)
    per_engine = engine_seconds / args.students
    per_nbgrader = nbgrader_seconds / args.students
    print(f"{args.students} submissions of {ASSIGNMENT} (right, half-right, untouched, unreadable)")
    print(f"engine (python -m autograder class, -j {args.jobs}): {per_engine:.2f} s per submission")
    print(f"plain nbgrader autograde:                 {per_nbgrader:.2f} s per submission")
    print(f"ratio engine / nbgrader: {per_engine / per_nbgrader:.2f}")


if __name__ == "__main__":
    main()
