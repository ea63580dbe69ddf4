"""python -m autograder grade <assignment-id> <notebook.ipynb> --json <results.json>
python -m autograder class <assignment-id> <course-dir> [--zip lms.zip] [-j 2]
python -m autograder similarity <assignment-id> <course-dir> [--against DIR] -o report.html
python -m autograder report <assignment-id> <course-dir>
python -m autograder gradescope <assignment-id> -o bundle.zip"""
from __future__ import annotations

import argparse
import atexit
import os
import pathlib
import sys

from . import assignment as assignments
from . import engine
from .result import Result
from .workers import Limits


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description="The course's grader.")
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="grade one notebook, write Gradescope's results.json")
    grade.add_argument("assignment", help="assignment id, e.g. a01-colab")
    grade.add_argument("notebook", type=pathlib.Path)
    grade.add_argument("--json", type=pathlib.Path, required=True, help="where to write results.json")
    grade.add_argument("--hide", type=pathlib.Path, action="append", default=[],
                       help="a further folder the student's code must not see (e.g. the course directory)")
    grade.add_argument("--budget", type=_seconds, default=None,
                       help="seconds for the whole grading (default: the assignment's, 600 unless its suite says)")
    grade.add_argument("--call-seconds", type=_seconds, default=None,
                       help="seconds one call of a student's function may take (default 30)")
    klass = commands.add_parser("class", help="grade every submission of a class into an nbgrader course directory")
    klass.add_argument("assignment")
    klass.add_argument("course", type=pathlib.Path, help="the nbgrader course directory")
    klass.add_argument("--zip", type=pathlib.Path, help="an LMS download to take the submissions from")
    klass.add_argument("-j", "--jobs", type=int, default=2, help="submissions graded at once")
    similar = commands.add_parser("similarity", help="compare the graded functions of every pair of submissions "
                                                     "of a class (and with known implementations)")
    similar.add_argument("assignment")
    similar.add_argument("course", type=pathlib.Path, help="the nbgrader course directory `class` graded into")
    similar.add_argument("--against", type=pathlib.Path,
                         help="a folder of known implementations (.py, .ipynb) to compare every submission with")
    similar.add_argument("-o", "--output", type=pathlib.Path, required=True,
                         help="the HTML report to write (report.json is written beside it)")
    report = commands.add_parser("report", help="write the class report page again (class-report-<id>.html)")
    report.add_argument("assignment")
    report.add_argument("course", type=pathlib.Path)
    scope = commands.add_parser("gradescope", help="write a Gradescope autograder bundle for an assignment")
    scope.add_argument("assignment")
    scope.add_argument("-o", "--output", type=pathlib.Path, required=True, help="the bundle zip to write")
    args = parser.parse_args(argv)
    if args.assignment not in assignments.known():
        parser.error(f"unknown assignment {args.assignment!r}; known: {', '.join(assignments.known())}")
    if args.command == "gradescope":
        from . import gradescope

        print(f"wrote {gradescope.bundle(args.assignment, args.output)}")
        return 0
    if args.command in ("similarity", "report"):
        if not (args.course / "submitted").is_dir():
            parser.error(f"{args.course} has no submitted/ folder: grade the class first with "
                         f"`python -m autograder class {args.assignment} {args.course}`")
        from . import classreport

        if args.command == "report":
            print(f"wrote {classreport.write(args.course.resolve(), args.assignment)}")
            return 0
        from . import similarity

        if args.against is not None and not args.against.is_dir():
            parser.error(f"--against {args.against} is not a folder")
        found = similarity.compare(args.assignment, args.course.resolve(), args.against)
        page, data = similarity.write(found, args.output)
        sys.stdout.reconfigure(errors="replace")
        print(similarity.table(found))
        print(f"wrote {page} and {data}")
        if (args.course / "autograder-results" / args.assignment).is_dir():
            print(f"class report: {classreport.write(args.course.resolve(), args.assignment)}")
        return 0
    if args.command == "class":
        from . import classroom

        outcome = classroom.grade_class(args.assignment, args.course, args.jobs, args.zip)
        print(classroom.table(outcome, args.assignment))
        return 0
    try:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.touch()
    except OSError as error:
        parser.error(f"cannot write the results file {args.json}: {error.strerror}")
    limits = Limits(call_seconds=args.call_seconds) if args.call_seconds else None
    try:
        result = engine.grade(args.assignment, args.notebook, hide_extra=args.hide, limits=limits,
                              budget_seconds=args.budget)
    except Exception as error:  # a fault of the grader's: the student still gets a results file
        print(f"autograder: the grader failed on {args.notebook} ({type(error).__name__}: {error})", file=sys.stderr)
        result = Result(args.assignment, notes=["the grader itself failed on this notebook; your instructor has been "
                                                "told (nothing in your notebook was graded)"],
                        flags=[f"the grader failed ({type(error).__name__})"])
    args.json.write_text(result.json())
    if hasattr(sys.stdout, "reconfigure"):  # a terminal that cannot show a character gets a "?"
        sys.stdout.reconfigure(errors="replace")
    print(result.summary(args.notebook.name))
    return 0


def _exit(code: int) -> None:
    """End the command without the interpreter's teardown of torch's modules (about 1.5 s of a
    2-core machine's time per notebook), after everything is written and the workers are gone."""
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # the fork server and its workers are killed here
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
