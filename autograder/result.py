"""One grading's result, and its renderings: Gradescope's results.json, the command line's
summary, the student's feedback page, points per function for the gradebook.

Every text that reaches a rendering passes through `clean`: no control characters, no lone
surrogates, bounded length. What student code printed or raised never gets here at all (the
worker reports an exception's type and line only); the tests' outputs are the suite's sentences.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

MAX_OUTPUT = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean(text, limit: int = MAX_OUTPUT) -> str:
    """Text safe for JSON, a terminal and HTML: control characters and lone surrogates replaced,
    length bounded."""
    text = str(text)
    text = _SURROGATE.sub("\ufffd", text)
    text = _CONTROL.sub("\ufffd", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass
class TestResult:
    name: str
    function: str
    max_score: float
    passed: bool
    output: str
    ran: bool = True  # False: not run (budget used up, function refused or banned)

    @property
    def score(self) -> float:
        return self.max_score if self.passed else 0.0


@dataclass
class Result:
    """The outcome of grading one notebook."""

    assignment: str
    tests: list[TestResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the student: what was wrong with the notebook
    flags: list[str] = field(default_factory=list)  # for the instructor: refusals, budget, unreadable notebook
    extra: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    def points_by_function(self) -> dict[str, tuple[float, float]]:
        points: dict[str, tuple[float, float]] = {}
        for test in self.tests:
            got, top = points.get(test.function, (0.0, 0.0))
            points[test.function] = (got + test.score, top + test.max_score)
        return points

    def override(self, function: str, output: str) -> None:
        """Every test of `function` earns nothing, with `output` (a refused or banned function)."""
        for test in self.tests:
            if test.function == function:
                test.passed, test.output = False, output

    # renderings ---------------------------------------------------------------------------
    def to_gradescope(self) -> dict:
        """Gradescope's results.json: score, tests (name, score, max_score, output, tags), output."""
        return {
            "score": self.score,
            "max_score": self.max_score,
            "tests": [{"name": clean(f"{t.function}: {t.name}", 300), "score": t.score, "max_score": t.max_score,
                       "output": clean(t.output if not t.passed else "passed"), "tags": [clean(t.function, 100)]}
                      for t in self.tests],
            "output": clean("\n".join(self.notes), 8000),
            "extra": _clean_tree(dict(self.extra, flags=self.flags)),
        }

    @classmethod
    def from_gradescope(cls, data: dict, assignment: str = "") -> "Result":
        """A result read back from its results.json (class grading keeps them)."""
        result = cls(assignment, notes=[n for n in str(data.get("output", "")).split("\n") if n])
        for test in data.get("tests", []):
            function = (test.get("tags") or [""])[0]
            name = str(test.get("name", "")).removeprefix(f"{function}: ")
            passed = test.get("score", 0) == test.get("max_score", 0)
            result.tests.append(TestResult(name, function, float(test.get("max_score", 0)), passed,
                                           str(test.get("output", ""))))
        extra = dict(data.get("extra", {}))
        result.flags = list(extra.pop("flags", []))
        result.extra = extra
        return result

    def json(self) -> str:
        return json.dumps(self.to_gradescope(), indent=2, ensure_ascii=True)

    def summary(self, notebook_name: str) -> str:
        """What the command line prints."""
        lines = [f"{clean(notebook_name, 200)}: {self.score:g} / {self.max_score:g}"]
        for test in self.tests:
            mark = "ok  " if test.passed else "FAIL"
            lines.append(f"  {mark} {test.score:g}/{test.max_score:g}  {clean(test.function + ': ' + test.name, 300)}")
            if not test.passed:
                lines.append(f"         {clean(test.output)}")
        if self.notes:
            lines.append("notes: " + clean("\n".join(self.notes), 8000).replace("\n", "\n       "))
        if self.flags:
            lines.append("for the instructor: " + clean("; ".join(self.flags), 4000))
        return "\n".join(lines)

    def feedback_html(self, student: str) -> str:
        """The student's feedback page: every test in words, no hidden input, no hidden code."""
        def e(text, limit=MAX_OUTPUT):
            return html.escape(clean(text, limit))

        rows = "".join(
            f"<tr class='{'pass' if t.passed else 'fail'}'><td>{e(t.function + ': ' + t.name, 300)}</td>"
            f"<td>{t.score:g} / {t.max_score:g}</td><td>{e(t.output if not t.passed else 'passed')}</td></tr>"
            for t in self.tests)
        notes = f"<p>{e(chr(10).join(self.notes), 8000)}</p>" if self.notes else ""
        return (f"<!doctype html><meta charset='utf-8'><title>{e(self.assignment)}: {e(student, 200)}</title>"
                "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td{padding:.3em .6em;"
                "vertical-align:top}.fail td:first-child{color:#b03a2e}.pass td:first-child{color:#1e8449}</style>"
                f"<h1>{e(self.assignment)}: {self.score:g} / {self.max_score:g}</h1>{notes}"
                f"<table><tr><th>test</th><th>points</th><th>what it found</th></tr>{rows}</table>")


def _clean_tree(value):
    if isinstance(value, str):
        return clean(value, 4000)
    if isinstance(value, dict):
        return {clean(k, 200): _clean_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_tree(v) for v in value]
    return value
