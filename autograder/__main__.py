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
    args = parser.parse_args(argv)
    if args.assignment not in engine.known_assignments():
        parser.error(f"unknown assignment {args.assignment!r}; known: {', '.join(engine.known_assignments())}")
    result = engine.grade(args.assignment, args.notebook)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(summary(result, args.notebook))
    return 0


if __name__ == "__main__":
    sys.exit(main())
