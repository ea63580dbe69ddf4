"""The pytest plugin that runs a hidden suite for one grading: it provides the suites' fixtures
(`student`, `reference`, `device`, `shared`), keeps the time budget, does not run the tests of a
function that cannot earn points, and records each test's outcome in words.

A test's output is the suite's own sentence (a Finding). Anything else a test raises is reported
by its type only: its message could carry a hidden input or whatever the student's code
returned, and hypothesis's reports (falsifying examples, "flaky" notes) would print the inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from .checks import Finding
from .proxy import Proxy
from .result import TestResult
from .workers import Deadline


class NotRun(Exception):
    """A test the plugin did not run; the message says why."""


@dataclass
class Session:
    """One run of a suite against one notebook, on one device."""

    student: Proxy
    reference: Proxy
    device: str = "cpu"
    deadline: Deadline = field(default_factory=lambda: Deadline(None))
    only: set | None = None  # run the tests of these functions alone
    skip_tests: frozenset = frozenset()  # the names of test functions not to run
    not_graded: dict = field(default_factory=dict)  # function -> why its tests are not run
    outcomes: list = field(default_factory=list)  # TestResult, in order
    shared: dict = field(default_factory=dict)  # results a suite computes once and judges in several tests


class Plugin:
    def __init__(self, session: Session):
        self.session = session

    # fixtures -------------------------------------------------------------------------------
    @pytest.fixture
    def student(self):
        return self.session.student

    @pytest.fixture
    def reference(self):
        return self.session.reference

    @pytest.fixture
    def device(self):
        """Where the tests ask for computation: "cpu" for the scored run, "cuda" for the feedback run."""
        return self.session.device

    @pytest.fixture
    def shared(self):
        """A dict for results several tests of this grading judge (this submission, this device)."""
        return self.session.shared

    # collection and running -----------------------------------------------------------------
    def pytest_collection_modifyitems(self, config, items):
        if self.session.only is None and not self.session.skip_tests:
            return
        only, skip = self.session.only, self.session.skip_tests
        kept, dropped = [], []
        for item in items:
            marker = item.get_closest_marker("function")
            wanted = only is None or marker is not None and marker.args[0] in only
            (kept if wanted and item.originalname not in skip else dropped).append(item)
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        function = _marker(pyfuncitem, "function")
        if function in self.session.not_graded:
            raise NotRun(self.session.not_graded[function])
        if self.session.deadline.expired():
            seconds = self.session.deadline.seconds
            raise NotRun(f"not run: the grading's time budget ({seconds:.0f} s) was used up before this test")
        return None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and report.failed):
            function = _marker(item, "function") or ""
            points = item.get_closest_marker("points")
            message, ran = "", True
            if call.excinfo is not None:
                message, ran = describe(call.excinfo.value, function)
            name = item.name.removeprefix("test_")
            if function:
                name = name.removeprefix(function + "_")
            self.session.outcomes.append(TestResult(name.replace("_", " "), function,
                                                    float(points.args[0]) if points else 0.0,
                                                    report.passed, message, ran))


def _marker(item, name: str):
    marker = item.get_closest_marker(name)
    return marker.args[0] if marker else None


def describe(error: BaseException, function: str) -> tuple[str, bool]:
    """(the output a failed test shows, whether it ran)."""
    if isinstance(error, NotRun):
        return str(error), False
    if isinstance(error, Finding):
        return str(error), True
    found = _finding_inside(error)
    if found is not None:
        return str(found), True
    if type(error).__module__.startswith("hypothesis") and "Flaky" in type(error).__name__:
        return (f"{function or 'the function'} gave different results when called twice with the same input: "
                "it must not depend on earlier calls, on the time or on chance it does not seed"), True
    return (f"the hidden test could not use what {function or 'the function'} returned "
            f"({type(error).__name__})"), True


def _finding_inside(error: BaseException, depth: int = 0):
    if depth > 5:
        return None
    for inner in getattr(error, "exceptions", ()) or ():
        if isinstance(inner, Finding):
            return inner
        found = _finding_inside(inner, depth + 1)
        if found is not None:
            return found
    return None
