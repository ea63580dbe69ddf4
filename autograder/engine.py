"""Grade one notebook: read it, screen it, start isolated workers for its code and the
reference's, run the assignment's hidden pytest suite against them in this process, and return
the Result.

    read (notebook.py) -> screen (screening.py) -> workers (workers.py) -> suite (plugin.py) -> Result

Points come from two kinds of fact only: values the notebook's functions returned, compared here
(with the reference's, an oracle's, or finite differences of value-only calls), and measurements
made here (the clock around a request). What a worker reports of itself (a banned call, an
exception) can only cost points.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import io
import pathlib
import sys
import threading
from dataclasses import dataclass

import pytest

from . import assignment as assignments
from .assignment import ROOT, Assignment
from .notebook import SubmissionError, locate, read_cells, statements
from .plugin import Plugin, Session
from .proxy import Proxy
from .result import Result
from .screening import exempt_sources, screen
from .workers import Deadline, Limits, Worker

known_assignments = assignments.known


def hidden_paths(root: pathlib.Path, notebook: pathlib.Path, extra=()) -> list[str]:
    """What a worker must not see: the course tree (but the helper package and the Python it
    runs from), the submission's folder and any extra folders (an instructor's course)."""
    keep = {root / "odcourse", pathlib.Path(sys.prefix).resolve()}
    hide = [str(p) for p in sorted(root.iterdir()) if p.resolve() not in keep
            and not any(k.is_relative_to(p.resolve()) for k in keep)]
    hide += [str(notebook.resolve().parent)] + [str(pathlib.Path(p).resolve()) for p in extra]
    return sorted(set(hide))


@functools.lru_cache(maxsize=None)
def _reference_statements(assignment: Assignment) -> list[dict]:
    cells = read_cells(assignment.source)
    located = {name: locate(cells, name, grade_id) for name, grade_id in assignment.functions.items()}
    return statements(cells, located)


@functools.lru_cache(maxsize=None)
def _exempt(assignment: Assignment) -> frozenset:
    return frozenset(exempt_sources(read_cells(assignment.release)))


_REFERENCES: dict = {}


class Starting:
    """A worker being started in a thread while the grader does other work (reading and
    screening the notebook, starting the other worker)."""

    def __init__(self, worker: Worker | None, start: bool = True):
        self.worker, self.problem = worker, None
        self.thread = threading.Thread(target=self._start) if worker is not None and start else None
        if self.thread is not None:
            self.thread.start()

    def _start(self) -> None:
        try:
            self.worker.start()
        except Exception as error:  # every call then says why
            self.problem = f"the notebook's code could not be started ({error})"

    def wait(self) -> str | None:
        if self.thread is not None:
            self.thread.join()
        return self.problem


def _reference(assignment: Assignment, hide, limits, cuda, deadline, keep: bool) -> Starting:
    """The reference's worker, starting: kept for the next submissions of a class when `keep`
    (the reference is the same for all)."""
    key = (assignment.id, cuda, tuple(hide[:-1]))
    worker = _REFERENCES.get(key) if keep else None
    if worker is None:
        worker = Worker(_reference_statements(assignment), hide=hide, limits=limits, cuda=cuda, fork_calls=False)
        if keep:
            _REFERENCES[key] = worker
            atexit.register(worker.kill)
    worker.deadline = deadline
    return Starting(worker, start=worker._channel is None)


def grade(assignment_id: str, notebook: pathlib.Path, root: pathlib.Path = ROOT, limits: Limits | None = None,
          hide_extra=(), keep_reference: bool = False, only: set | None = None,
          budget_seconds: float | None = None, skip_tests: frozenset = frozenset()) -> Result:
    """Grade `notebook` for `assignment_id`.

    keep_reference: keep the reference's worker for the next call (class grading).
    only: run the tests of these graded functions alone (the project's proofs).
    skip_tests: the suite's tests (by their function's name) not to run (the project's proofs).
    budget_seconds: the whole grading's time budget (default: the assignment's)."""
    assignment = assignments.load(assignment_id, root)
    limits = limits or Limits()
    deadline = Deadline(budget_seconds if budget_seconds is not None else assignment.budget_seconds)
    result = Result(assignment.id)
    try:
        cells = read_cells(notebook)
    except SubmissionError as error:
        broken = f"the notebook could not be graded: {error}"
        result.notes.append(broken)
        result.flags.append("unreadable notebook")
        # No worker starts: every test is recorded as not run, with the reason.
        session = Session(Proxy(None, broken=broken), Proxy(None), "cpu", deadline, only, frozenset(skip_tests),
                          {name: broken for name in assignment.functions})
        _run_pytest(assignment, session)
        result.tests = session.outcomes
        return result
    hide = hidden_paths(root, notebook, hide_extra)
    reference = _reference(assignment, hide, limits, False, deadline, keep_reference)  # meanwhile: screening
    located = {name: locate(cells, name, grade_id) for name, grade_id in assignment.functions.items()}
    screening = screen(cells, located, assignment.banned, set(_exempt(assignment)), statements(cells, located))
    for refusal in screening.refusals:
        result.notes.append(f"cell {refusal.cell + 1} was not run: {refusal.sentence()}")
    if screening.refusals:
        result.flags.append(f"refused constructs in {len(screening.refused_cells)} cell(s): "
                            + "; ".join(r.sentence() for r in screening.refusals[:5]))
    not_graded = dict(screening.blocked)
    for name, uses in screening.banned.items():
        not_graded.setdefault(name, f"{name} uses {', '.join(uses)}, which this exercise does not allow: it earns "
                                    "no points (its tests were not run)")
    missing = {name: loc.how for name, loc in located.items() if loc.cell is None}
    grading = Grading(assignment, statements(cells, located, screening.refused_cells, screening.course_cells), hide,
                      limits, deadline, keep_reference, only, frozenset(skip_tests), missing, not_graded)
    session, student = grading.run("cpu", reference)
    result.tests = session.outcomes
    for item in student.load_errors:
        result.notes.append(f"{item['label']}: {item['error']}")
    if student.restarts:
        result.flags.append(f"the notebook stopped the grader's worker {student.restarts} time(s) while loading")
    result.extra["found_by"] = {name: (loc.how if loc.cell is not None else "not found") for name, loc in located.items()}
    result.extra["isolation"] = student.isolation
    for name, reason in not_graded.items():
        result.override(name, reason)
    for name, uses in sorted(student.banned_used.items()):
        if name in assignment.functions and name not in not_graded:
            result.override(name, f"{name} used {', '.join(sorted(uses))} when it ran, which this exercise does not "
                                  "allow: it earns no points")
            result.flags.append(f"{name} used {', '.join(sorted(uses))} at run time")
    if any(not t.ran and "budget" in t.output for t in result.tests):
        result.flags.append("the time budget was used up before every test had run")
    if cuda_present() and not deadline.expired():
        # Scored on the CPU; on a GPU machine the same tests run on CUDA as unscored feedback.
        session, _ = grading.run("cuda")
        result.extra["cuda_feedback"] = [{"name": f"{o.function}: {o.name}", "passed": o.passed,
                                          "output": o.output or "passed"} for o in session.outcomes]
        failed = sum(not o.passed for o in session.outcomes)
        result.notes.append(f"On CUDA (not scored): {len(session.outcomes) - failed} of {len(session.outcomes)} "
                            "tests pass.")
    return result


@dataclass
class Grading:
    """What every run of the hidden suite against one notebook shares: the scored run on the CPU
    and, on a GPU machine, the unscored feedback run on CUDA."""

    assignment: Assignment
    code: list  # the notebook's statements the worker runs
    hide: list
    limits: Limits
    deadline: Deadline
    keep_reference: bool
    only: set | None
    skip_tests: frozenset
    missing: dict  # graded function -> why it was not found
    not_graded: dict  # graded function -> why its tests are not run

    def run(self, device: str, reference: Starting | None = None) -> tuple[Session, Worker]:
        """Start the workers on `device` (the reference's may be starting already), run the suite,
        end them (the reference's is kept for the next submission with keep_reference)."""
        cuda = device == "cuda"
        student = Worker(self.code, hide=self.hide, limits=self.limits, cuda=cuda, allowed=self.assignment.allowed,
                         banned={k: list(v) for k, v in self.assignment.banned.items()},
                         operators={k: list(v) for k, v in self.assignment.operators.items()}, deadline=self.deadline)
        starting = Starting(student)
        reference = reference or _reference(self.assignment, self.hide, self.limits, cuda, self.deadline,
                                            self.keep_reference)
        session = Session(Proxy(student, self.missing), Proxy(reference.worker), device, self.deadline, self.only,
                          self.skip_tests, dict(self.not_graded))
        with contextlib.ExitStack() as stack:
            stack.enter_context(student)
            if not self.keep_reference:
                stack.enter_context(reference.worker)
            session.student.broken = starting.wait()
            reference.wait()
            _run_pytest(self.assignment, session)
        return session, student


def cuda_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _run_pytest(assignment: Assignment, session: Session) -> None:
    with _quiet():
        pytest.main([str(assignment.suite), "-q", "--assert=plain", "-c", str(assignment.suite.parent / "pytest.ini"),
                     "--rootdir", str(assignment.suite.parent), "-p", "no:xdist",
                     # its collection of unraisable exceptions runs gc twice per session (0.5 s)
                     "-p", "no:unraisableexception", "-W", "ignore"], plugins=[Plugin(session)])



@contextlib.contextmanager
def _quiet():
    """pytest prints its own report; the grader prints the student's summary instead."""
    saved = sys.stdout
    sys.stdout = io.StringIO()
    try:
        yield
    finally:
        sys.stdout = saved
