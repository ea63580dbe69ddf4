"""Time the similarity report on a generated class.

    .venv/bin/python bench/similarity.py [--students 200] [--assignment a08-yolo]

Writes a course directory of N a08-yolo submissions (submitted/<student>/a08-yolo/, as `class`
takes them in) and times `python -m autograder similarity a08-yolo <course> -o report.html`,
the whole command, start-up included. Each student's code for each of the five graded functions
is the reference or the project's different-but-right answer, with its own names (every name the
cell binds renamed), an extra statement and comments: every pair of students shares code, so
every pair is scored in full, the slowest case there is. Prints the seconds and the pairs; exits
non-zero above a minute (the goal for 200 submissions).
"""
from __future__ import annotations

import argparse
import ast
import copy
import pathlib
import random
import resource
import subprocess
import sys
import tempfile
import textwrap
import time

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.notebook_grading import student_notebook  # noqa: E402

GOAL_SECONDS = 60.0


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]):
        self.names = names

    def visit_Name(self, node):
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.names.get(node.arg, node.arg)
        return node

    def _named(self, node):
        node.name = self.names.get(node.name, node.name)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_ClassDef = _named


def disguise(code: str, keep: set[str], rng: random.Random, tag: int) -> str:
    """The code with every name it binds renamed (but `keep`), one extra statement in its first
    function and a comment on every third line."""
    tree = ast.parse(textwrap.dedent(code))
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names = {name: f"{name[:3]}_{rng.randrange(10**6)}" for name in sorted(bound - keep)}
    tree = _Rename(names).visit(tree)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            node.body.insert(0, ast.parse(f"trace_{tag} = {tag}").body[0])
            break
    lines = ast.unparse(ast.fix_missing_locations(tree)).splitlines()
    return "\n".join(line + (f"  # step {i}" if i % 3 == 0 and line.strip() else "") for i, line in enumerate(lines))


def pool(assignment: str) -> dict[str, list[str]]:
    """grade id -> codes: the reference's and the project's different-but-right answer."""
    import importlib

    from autograder import assignment as assignments

    spec = assignments.load(assignment)
    reference = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(spec.source, as_version=4).cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    different = getattr(importlib.import_module("tests.test_" + assignment.replace("-", "_")), "DIFFERENT_BUT_RIGHT", {})
    return {grade_id: [reference[grade_id]] + ([textwrap.dedent(different[grade_id])] if grade_id in different else [])
            for grade_id in spec.functions.values()}


def make_class(course: pathlib.Path, students: int, assignment: str = "a08-yolo", seed: int = 0) -> list[str]:
    """Write `students` submissions into course/submitted/; return the student ids."""
    from autograder import assignment as assignments

    rng = random.Random(seed)
    spec = assignments.load(assignment)
    codes = pool(assignment)
    keep = set(spec.functions)
    template = student_notebook(ROOT, assignment)
    ids = []
    for index in range(students):
        notebook = copy.deepcopy(template)
        for cell in notebook.cells:
            options = codes.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
            if options and cell.metadata["nbgrader"].get("solution"):
                cell.source = disguise(options[index % len(options)], keep, rng, index)
        student = f"s{index:03d}"
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / f"{assignment}.ipynb")
        ids.append(student)
    return ids


def run(course: pathlib.Path, assignment: str) -> tuple[float, float, pathlib.Path]:
    """(wall-clock seconds, CPU seconds) of the whole similarity command on `course`, and its
    report.json. The command runs on one core: on a machine busy with other work its wall clock
    grows while its CPU time does not."""
    output = course / "similarity" / "report.html"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autograder", "similarity", assignment, str(course), "-o", str(output)],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"the similarity command failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, output.with_suffix(".json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--assignment", default="a08-yolo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        course = pathlib.Path(folder) / "course"
        make_class(course, args.students, args.assignment)
        seconds, cpu, report = run(course, args.assignment)
        import json

        pairs = json.loads(report.read_text())
    print(f"similarity of {args.students} {args.assignment} submissions: {seconds:.1f} s ({cpu:.1f} s of CPU) "
          f"for {len(pairs)} pairs (goal: under {GOAL_SECONDS:.0f} s)")
    return 0 if min(seconds, cpu) < GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
