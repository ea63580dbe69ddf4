"""python -m autograder grade <assignment-id> <notebook.ipynb> --json <results.json>"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from . import engine


def summary(result: dict, notebook: pathlib.Path) -> str:
    lines = [f"{notebook.name}: {result['score']:g} / {result['max_score']:g}"]
    for test in result["tests"]:
        mark = "ok  " if test["score"] == test["max_score"] else "FAIL"
        lines.append(f"  {mark} {test['score']:g}/{test['max_score']:g}  {test['name']}")
        if test["score"] != test["max_score"]:
            lines.append(f"         {test['output']}")
    if result.get("output"):
        lines.append("notes: " + result["output"].replace("\n", "\n       "))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description="The course's grader.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="grade one notebook, write Gradescope's results.json")
    grade.add_argument("assignment", help="assignment id, e.g. a01-colab")
    grade.add_argument("notebook", type=pathlib.Path)
    grade.add_argument("--json", type=pathlib.Path, required=True, help="where to write results.json")
    grade.add_argument("--hide", type=pathlib.Path, action="append", default=[],
                       help="a further folder the student's code must not see (e.g. the course directory)")
    klass = commands.add_parser("class", help="grade every submission of a class into an nbgrader course directory")
    klass.add_argument("assignment")
    klass.add_argument("course", type=pathlib.Path, help="the nbgrader course directory")
    klass.add_argument("--zip", type=pathlib.Path, help="an LMS download to take the submissions from")
    klass.add_argument("-j", "--jobs", type=int, default=2, help="submissions graded at once")
    scope = commands.add_parser("gradescope", help="write a Gradescope autograder bundle for an assignment")
    scope.add_argument("assignment")
    scope.add_argument("-o", "--output", type=pathlib.Path, required=True, help="the bundle zip to write")
    args = parser.parse_args(argv)
    if args.assignment not in engine.known_assignments():
        parser.error(f"unknown assignment {args.assignment!r}; known: {', '.join(engine.known_assignments())}")
    if args.command == "gradescope":
        from . import gradescope

        print(f"wrote {gradescope.bundle(args.assignment, args.output)}")
        return 0
    if args.command == "class":
        from . import classroom

        outcome = classroom.grade_class(args.assignment, args.course, args.jobs, args.zip)
        print(classroom.table(outcome, args.assignment))
        return 0
    result = engine.grade(args.assignment, args.notebook, hide_extra=args.hide)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(summary(result, args.notebook))
    return 0


if __name__ == "__main__":
    sys.exit(main())
