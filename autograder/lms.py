"""Grades in the format the LMS imports: Canvas's gradebook CSV, written by `class` next to
nbgrader's export as <course>/grades-<id>-canvas.csv.

Canvas's gradebook import (Grades > Import; canvas-lms's GradebookImporter) reads a header row
whose first columns identify the student: `Student`, `ID`, `SIS User ID`, `SIS Login ID`, then
`Section`; every later column is an assignment, matched by "Title (assignment id)" or by title,
or created when no assignment has that title. An optional second row starting with
`Points Possible` gives each assignment's points. A student is matched by the Canvas user ID
(`ID`), else by `SIS User ID` or `SIS Login ID`, else by name.

What this file knows of a student: nbgrader's student record (`nbgrader db student add <id>
--lms-user-id=<canvas id> --last-name=... --first-name=...`, or `nbgrader db student import`),
and the Canvas user ID read from Canvas's own submission download, whose flat file names are
`<name>_[late_]<canvas user id>_<submission id>_<file name>` (recorded by intake as the
student's `lms_user_id`). The score is the gradebook's, manual grades included, as
`nbgrader export` gives it; re-running `class` after manual grading rewrites the file.
"""
from __future__ import annotations

import csv
import pathlib
import re

CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
# Canvas's download: "smithjane_12345_67890_a01-colab.ipynb", "smithjane_late_12345_67890_a01-colab.ipynb"
CANVAS_FILE_NAME = re.compile(r"^[^_/\\]+_(?:late_)?(\d+)_\d+_.+")


def canvas_user_id(file_name: str) -> str | None:
    """The Canvas user ID in a file name of Canvas's submission download, or None."""
    match = CANVAS_FILE_NAME.match(file_name)
    return match.group(1) if match else None


def _cell(text) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = "" if text is None else str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_canvas(course: pathlib.Path, assignment: str, column: str | None = None) -> pathlib.Path:
    """grades-<id>-canvas.csv from gradebook.db: one assignment column, named `column` (default the
    assignment id; "Title (canvas assignment id)" updates an existing Canvas assignment)."""
    from nbgrader.api import Gradebook

    path = course / f"grades-{assignment}-canvas.csv"
    column = column or assignment
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        rows, possible = [], 0.0
        for submission in sorted(gradebook.assignment_submissions(assignment), key=lambda s: s.student.id):
            student = submission.student
            possible = max(possible, float(submission.max_score))
            name = ", ".join(part for part in (student.last_name, student.first_name) if part) or student.id
            rows.append([_cell(name), _cell(student.lms_user_id or ""), "", "", "", f"{float(submission.score):g}"])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CANVAS_HEADER + [_cell(column)])
        writer.writerow(["Points Possible", "", "", "", "", f"{possible:g}"])
        writer.writerows(rows)
    return path
