"""The class report: one page to look at after grading a class.

    <course>/class-report-<id>.html     written by `class` (and again by `similarity`, and by
                                        `python -m autograder report <id> <course>`)

The score distribution (a histogram of the gradebook's scores, manual grades included), each
test's failure rate as bars (the tests most students fail are what the next lecture should
cover), points per function, the submissions the grader flagged for the instructor (refused
constructs, a time budget used up, unreadable notebooks), and the most similar pairs of the
similarity report when it has been run. The figures are drawn with matplotlib into the page as
PNG; the page loads nothing from the network. Everything read from the course directory
(student ids, flags, test names) is cleaned and escaped.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
import pathlib
import statistics
import urllib.parse

from . import assignment as assignments
from .result import Result, clean


def _e(text, limit: int = 300) -> str:
    return html.escape(clean(text, limit))


def results(course: pathlib.Path, assignment: str) -> dict[str, Result]:
    """student -> the result `class` kept (autograder-results/<id>/<student>.json)."""
    found = {}
    for path in sorted((course / "autograder-results" / assignment).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found[path.stem] = Result.from_gradescope(data, assignment)
    return found


def gradebook_scores(course: pathlib.Path, assignment: str) -> dict[str, tuple[float, float]]:
    """student -> (score, max score) in gradebook.db, manual grades included; {} without a gradebook."""
    database = course / "gradebook.db"
    if not database.exists():
        return {}
    from nbgrader.api import Gradebook, MissingEntry

    try:
        with Gradebook(f"sqlite:///{database}") as gradebook:
            return {s.student.id: (float(s.score), float(s.max_score))
                    for s in gradebook.assignment_submissions(assignment)}
    except MissingEntry:
        return {}


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def histogram(scores: list[float], top: float) -> str:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3), dpi=100)
    edges = [x * top / 10 for x in range(11)] if top > 0 else [0, 1]
    axis.hist(scores, bins=edges, color="#2e86c1", edgecolor="white")
    axis.set_xlabel(f"score (out of {top:g})")
    axis.set_ylabel("students")
    axis.set_xlim(edges[0], edges[-1])
    axis.yaxis.get_major_locator().set_params(integer=True)
    axis.set_title("Score distribution")
    figure.tight_layout()
    return _png(figure)


def failure_bars(rates: list[tuple[str, int, int]]) -> str:
    """Horizontal bars: (test, students failing it, students graded on it), most failed first."""
    plt = _pyplot()
    labels = [clean(name, 70) for name, _, _ in rates]
    figure, axis = plt.subplots(figsize=(8, 0.32 * len(rates) + 1.1), dpi=100)
    positions = list(range(len(rates)))
    bars = axis.barh(positions, [100 * failed / seen for _, failed, seen in rates], color="#b03a2e")
    axis.bar_label(bars, labels=[f"{failed} of {seen}" for _, failed, seen in rates], fontsize=7, padding=2)
    axis.set_yticks(positions, labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, 100)
    axis.set_xlabel("students failing the test (%)")
    axis.set_title("Failure rate of each test")
    figure.tight_layout()
    return _png(figure)


STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}img{max-width:100%}"
         "table{border-collapse:collapse}td,th{padding:.25em .7em;text-align:left;vertical-align:top}"
         "tr:nth-child(even){background:#f6f6f6}.num{text-align:right}.flag{color:#b03a2e}small{color:#555}")


def render(course: pathlib.Path, assignment: str) -> str:
    e = _e
    spec = assignments.load(assignment)
    graded = results(course, assignment)
    book = gradebook_scores(course, assignment)
    scores = {student: book.get(student, (r.score, r.max_score)) for student, r in graded.items()}
    top = max((m for _, m in scores.values()), default=0.0)
    values = [s for s, _ in scores.values()]
    parts = [f"<!doctype html><meta charset='utf-8'><title>{e(assignment)}: class report</title>"
             f"<style>{STYLE}</style><h1>{e(assignment)}: class report</h1>"]
    if not graded:
        parts.append("<p>No graded submissions yet: run <code>python -m autograder class</code> first.</p>")
        return "".join(parts)
    parts.append(f"<p>{len(graded)} students graded; mean {statistics.mean(values):.2f}, median "
                 f"{statistics.median(values):g} of {top:g} points; {sum(v == top for v in values)} with full marks, "
                 f"{sum(v == 0 for v in values)} with none. Scores are the gradebook's (manual grades included). "
                 f"Written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.</p>")
    parts.append(f"<img alt='histogram of the scores' src='{histogram(values, top)}'>")

    counts: dict[str, list[int]] = {}  # test -> [students failing it, students graded on it]
    for result in graded.values():
        for test in result.tests:
            entry = counts.setdefault(f"{test.function}: {test.name}", [0, 0])
            entry[0] += not test.passed
            entry[1] += 1
    rates = sorted(((name, failed, seen) for name, (failed, seen) in counts.items()),
                   key=lambda item: (-item[1] / item[2], item[0]))
    if rates:
        parts.append("<h2>What students got wrong</h2><p>The share of students failing each test, most failed "
                     "first: what the next lecture should cover.</p>")
        parts.append(f"<img alt='failure rate of each test' src='{failure_bars(rates)}'>")
        parts.append("<details><summary>the same as a table</summary><table><tr><th>test</th>"
                     "<th class='num'>failed by</th></tr>")
        for name, failed, seen in rates:
            parts.append(f"<tr><td>{e(name)}</td><td class='num'>{failed} of {seen}</td></tr>")
        parts.append("</table></details>")

    parts.append("<h2>Points per function</h2><table><tr><th>function</th><th class='num'>mean</th>"
                 "<th class='num'>of</th><th class='num'>full marks</th></tr>")
    for function in spec.functions:
        earned = [r.points_by_function().get(function) for r in graded.values()]
        earned = [p for p in earned if p is not None]
        if not earned:
            continue
        possible = max(m for _, m in earned)
        full = sum(got == possible for got, _ in earned)
        parts.append(f"<tr><td>{e(function)}</td><td class='num'>{statistics.mean(g for g, _ in earned):.2f}</td>"
                     f"<td class='num'>{possible:g}</td><td class='num'>{full} of {len(earned)}</td></tr>")
    parts.append("</table>")

    flagged = {student: r.flags for student, r in graded.items() if r.flags}
    parts.append(f"<h2>Flagged for you ({len(flagged)})</h2>")
    if flagged:
        parts.append("<p>Refused constructs, a time budget used up, unreadable notebooks: read these submissions.</p>"
                     "<table><tr><th>student</th><th>what the grader saw</th></tr>")
        for student, flags in sorted(flagged.items()):
            parts.append(f"<tr><td>{e(student, 200)}</td><td class='flag'>{e('; '.join(flags), 2000)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")

    parts.append("<h2>Most similar pairs</h2>")
    summary = course / "autograder-similarity" / f"{assignment}.json"
    try:
        similar = json.loads(summary.read_text())
    except (OSError, ValueError):
        similar = None
    if not isinstance(similar, dict):
        parts.append(f"<p>Not run yet: <code>python -m autograder similarity {e(assignment)} {e(str(course), 500)} "
                     "-o similarity.html</code></p>")
    else:
        report = pathlib.Path(str(similar.get("report", "")))
        link = os.path.relpath(report, course) if report.is_absolute() else str(report)
        likely = float(similar.get("likely", 1.0))
        parts.append(f"<p>From the similarity report of {e(similar.get('created', ''), 40)} "
                     f"(<a href='{html.escape(pathlib.PurePath(link).as_posix(), quote=True)}'>the whole report</a>, "
                     "the codes side by side); pairs at "
                     f"{likely:g} or above in red. Read the code before concluding anything.</p>"
                     "<table><tr><th class='num'>similarity</th><th>function</th><th>pair</th></tr>")
        for pair in [p for p in similar.get("pairs", []) if isinstance(p, dict) and p.get("similarity")][:20]:
            try:
                score = float(pair["similarity"])
                a, b = (str(s) for s in pair["students"])
                function = str(pair["function"])
            except (KeyError, TypeError, ValueError):
                continue
            klass = " class='flag'" if score >= likely else ""
            parts.append(f"<tr{klass}><td class='num'>{score:.2f}</td><td>{e(function)}</td>"
                         f"<td>{e(a, 200)} and {e(b, 200)}</td></tr>")
        parts.append("</table>")

    parts.append("<h2>Students</h2><details><summary>every score, with its feedback page</summary>"
                 "<table><tr><th>student</th><th class='num'>score</th></tr>")
    for student in sorted(scores):
        score, possible = scores[student]
        page = f"autograder-feedback/{urllib.parse.quote(assignment)}/{urllib.parse.quote(student)}.html"
        parts.append(f"<tr><td><a href='{html.escape(page, quote=True)}'>{e(student, 200)}</a></td>"
                     f"<td class='num'>{score:g} / {possible:g}</td></tr>")
    parts.append("</table></details>")
    return "".join(parts)


def write(course: pathlib.Path, assignment: str) -> pathlib.Path:
    path = course / f"class-report-{assignment}.html"
    path.write_text(render(course, assignment), encoding="utf-8")
    return path
