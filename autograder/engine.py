"""Grade one notebook: read it, start isolated workers for its code and the reference's, run
the assignment's hidden pytest suite against them in this process, and return Gradescope's
results.json structure."""
from __future__ import annotations

import ast
import atexit
import contextlib
import pathlib
import sys
import threading
from dataclasses import dataclass, field

import pytest

from .checks import Finding
from .notebook import SubmissionError, locate, read_cells, statements
from .banned import ALLOW, aliases, static_uses
from .sandbox import Limits, Worker

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUITES = pathlib.Path(__file__).resolve().parent / "suites"
HELPER_PACKAGE = "odcourse"
_CURRENT = threading.local()


def suite_path(assignment_id: str) -> pathlib.Path:
    return SUITES / f"test_{assignment_id.replace('-', '_')}.py"


def known_assignments() -> list[str]:
    # Assignment ids have hyphens only (a04-roi-pooling); their suites' file names have underscores.
    return sorted(p.stem.removeprefix("test_").replace("_", "-") for p in SUITES.glob("test_a*.py"))


def suite_spec(assignment_id: str) -> tuple[dict, dict]:
    """(FUNCTIONS, BANNED) of a hidden suite, read as literals without importing it (importing
    would evaluate its pytest marks outside the pytest session that runs it); BANNED has an entry
    for every function, the helper package among them, and "!name" entries for what is allowed."""
    path = suite_path(assignment_id)
    if not path.exists():
        raise KeyError(assignment_id)
    values = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = _literal(node.value, values)
            except ValueError:
                if node.targets[0].id in ("FUNCTIONS", "BANNED", "HELPERS_ALLOWED"):
                    raise
    functions, banned = values["FUNCTIONS"], values.get("BANNED", {})
    # The course's helper package wraps the very operations students write (chapter 3's ridge
    # regression, chapter 5's anchors...): no graded function may use it, but for the helpers an
    # assignment hands out (HELPERS_ALLOWED, e.g. a02's over-segmentation), kept as exceptions.
    exceptions = [ALLOW + name for name in values.get("HELPERS_ALLOWED", [])]
    banned = {name: list(dict.fromkeys(banned.get(name, []) + [HELPER_PACKAGE] + exceptions)) for name in functions}
    return functions, banned


def _literal(node, known: dict):
    """A literal, where names of earlier literals and `+` of lists may appear (a suite's BANNED
    may share a list: "conv_matrix": CONVOLUTIONS + [...])."""
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left, known), _literal(node.right, known)
        if isinstance(left, list) and isinstance(right, list):
            return left + right
        raise ValueError("only lists may be added")
    if isinstance(node, ast.List):
        return [_literal(element, known) for element in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k, known): _literal(v, known) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


class Proxy:
    """The graded functions of one notebook, called in its worker: `proxy.name(*args)` or
    `proxy.call(name, *args, scenario=..., failure=...)`. A failed call fails the test with a
    sentence naming the function and the error, never with a hidden input."""

    def __init__(self, worker: Worker | None, missing: dict[str, str], banned: dict[str, list[str]],
                 broken: str | None = None):
        self.worker, self.missing, self.banned, self.broken = worker, missing, banned, broken
        self.banned_used: dict[str, set] = {}
        self.last_call_seconds = 0.0  # the whole request, transfer of arguments and result included
        self.last_function_seconds = 0.0  # the function alone, timed in the worker
        self.last_modified: list = []

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def call(self, name, *args, scenario=None, failure=None, seconds=None, probe=None, **kwargs):
        """Call `name` (a dotted name reaches an attribute: "RoIPoolFunction.apply") in the worker.

        probe: what trusted code in the worker does around the call (autograder.worker.run_probe):
        {"kind": "backward", "wrt": [argument positions], "grad_output": tensor} returns
        (value, gradients of sum(value * grad_output) with respect to those arguments); without
        "grad_output" the gradients of sum(value); with "discard": True it returns None (a timed
        forward and backward pass, nothing sent back);
        {"kind": "gradcheck", "wrt": [...]} returns "passed" or what torch.autograd.gradcheck found;
        {"kind": "requires_grad", "wrt": [...]} returns, for each tensor of the result, whether a
        gradient would flow back from it to those arguments;
        {"kind": "module", "inputs": ..., "state_dict": ..., "backward": bool} builds the module
        `name(*args)` and returns {"state", "outputs", "gradients"} (worker.probe_module);
        {"kind": "seeded", "seeds": [...], "generator": bool} returns the results under each seed
        (worker.probe_seeded).
        """
        if self.broken:
            raise Finding(self.broken)
        if name.split(".")[0] in self.missing:
            head = name.split(".")[0]
            raise Finding(f"{head} was not found in the notebook: {self.missing[head]}")
        reply = self.worker.call(name, args, kwargs, scenario=scenario, banned=self.banned.get(name.split(".")[0], []),
                                 seconds=seconds, probe=probe)
        self.last_call_seconds = reply.get("wall_seconds", 0.0)
        self.last_function_seconds = reply.get("seconds", self.last_call_seconds)
        self.last_modified = reply.get("modified", [])  # tensor arguments the call changed in place
        if reply.get("banned_used"):
            self.banned_used.setdefault(name.split(".")[0], set()).update(reply["banned_used"])
        if not reply.get("ok"):
            error = reply.get("error", "no answer")
            if error.startswith("NotImplementedError"):
                raise Finding(f"{name} is not implemented yet (it still raises NotImplementedError)")
            if failure:  # the test's own sentence; "{error}" in it stands for the error
                raise Finding(failure.replace("{error}", error))
            raise Finding(f"{name} failed: {error}")
        return reply["value"]


@dataclass
class Session:
    student: Proxy
    reference: Proxy
    device: str = "cpu"
    outcomes: list = field(default_factory=list)
    # results a suite computes once and judges in several tests (one submission, one device)
    shared: dict = field(default_factory=dict)


def current() -> Session:
    return _CURRENT.session


class Collector:
    """A pytest plugin that records each test's points, function, outcome and message."""

    def __init__(self, session: Session, only: set | None = None, banned: set | None = None):
        self.session, self.only, self.banned = session, only, banned or set()

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        """A function found calling a banned name in its source earns nothing on any of its tests
        (results() says why): its tests are recorded as failed without running its code."""
        function = pyfuncitem.get_closest_marker("function")
        if function and function.args[0] in self.banned:
            raise Finding(f"{function.args[0]} was not run: it calls a function this exercise does not allow")
        return None

    def pytest_collection_modifyitems(self, config, items):
        if self.only is None:
            return
        marked = [(i, i.get_closest_marker("function")) for i in items]
        config.hook.pytest_deselected(items=[i for i, m in marked if not m or m.args[0] not in self.only])
        items[:] = [i for i, m in marked if m and m.args[0] in self.only]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and report.failed):
            points = item.get_closest_marker("points")
            function = item.get_closest_marker("function")
            message = ""
            if call.excinfo is not None:
                error = call.excinfo.value
                if isinstance(error, Finding):
                    message = str(error)
                else:  # the test could not use what came back
                    message = (f"the hidden test could not use what {function.args[0] if function else 'the function'} "
                               f"returned ({type(error).__name__}: {str(error)[:200]})")
            name = item.name.removeprefix("test_")
            if function:
                name = name.removeprefix(function.args[0] + "_")
            self.session.outcomes.append({
                "name": name.replace("_", " "),
                "function": function.args[0] if function else "",
                "max_score": float(points.args[0]) if points else 0.0,
                "passed": report.passed,
                "message": message,
            })


def hidden_paths(root: pathlib.Path, notebook: pathlib.Path, extra=()) -> list[str]:
    """What a worker must not see: the course tree (but the helper package and the Python it
    runs from), the submission's folder and any extra folders (an instructor's course)."""
    keep = {root / "odcourse", pathlib.Path(sys.prefix).resolve()}
    hide = [str(p) for p in sorted(root.iterdir()) if p.resolve() not in keep
            and not any(k.is_relative_to(p.resolve()) for k in keep)]
    hide += [str(notebook.resolve().parent)] + [str(pathlib.Path(p).resolve()) for p in extra]
    return sorted(set(hide))


def prepare(cells, functions: dict[str, str], banned_rules: dict[str, list[str]]):
    located = {name: locate(cells, name, grade_id) for name, grade_id in functions.items()}
    stmts = statements(cells, located)
    bound = aliases([s["code"] for s in stmts if s["defines"] is None])
    static = {}
    for name, rules in banned_rules.items():
        code = "".join(s["code"] for s in stmts if s["defines"] == name)
        uses = static_uses(code, bound, rules)
        if uses:
            static[name] = set(uses)
    missing = {name: loc.how for name, loc in located.items() if loc.cell is None}
    return located, stmts, static, missing


_REFERENCES: dict = {}


def reference_worker(key, ref_stmts, hide, limits, cuda) -> Worker:
    """A reference worker kept for the next submissions of a class (the reference is the same
    for all): one process grading many notebooks starts it once."""
    worker = _REFERENCES.get(key)
    if worker is None:
        worker = _REFERENCES[key] = Worker(ref_stmts, hide=hide, limits=limits, cuda=cuda)
        atexit.register(worker.kill)
    return worker


def grade(assignment_id: str, notebook: pathlib.Path, root: pathlib.Path = ROOT, limits: Limits | None = None,
          hide_extra=(), keep_reference: bool = False, only: set | None = None) -> dict:
    """Grade `notebook` for `assignment_id`; return the results.json structure.

    keep_reference: keep the reference's worker running for the next call (class grading).
    only: run the tests of these graded functions alone (the project's proofs, which change one
    function of the reference at a time); None runs the whole suite."""
    functions, banned_rules = suite_spec(assignment_id)
    limits = limits or Limits()
    notes = []
    reference_cells = read_cells(root / "solutions" / assignment_id / f"{assignment_id}.ipynb")
    _, ref_stmts, _, _ = prepare(reference_cells, functions, {})
    try:
        cells = read_cells(notebook)
        located, stmts, static, missing = prepare(cells, functions, banned_rules)
        broken = None
    except SubmissionError as error:
        located, stmts, static, missing, broken = {}, [], {}, {}, f"the notebook could not be graded: {error}"
        notes.append(broken)
    hide = hidden_paths(root, notebook, hide_extra)
    session, isolation = run_suite(assignment_id, stmts, ref_stmts, hide, limits, missing, banned_rules, broken,
                                   notes, device="cpu", keep_reference=keep_reference, only=only,
                                   statically_banned=set(static))
    result = results(session, located, static, notes, isolation)
    if not broken and cuda_present():
        # Scored on the CPU; on a GPU machine the same tests run on CUDA as unscored feedback.
        cuda_session, _ = run_suite(assignment_id, stmts, ref_stmts, hide, limits, missing, banned_rules, broken,
                                    [], device="cuda", keep_reference=keep_reference, only=only,
                                    statically_banned=set(static))
        result["extra"]["cuda_feedback"] = [
            {"name": f"{o['function']}: {o['name']}", "passed": o["passed"], "output": o["message"] or "passed"}
            for o in cuda_session.outcomes]
        failed = sum(not o["passed"] for o in cuda_session.outcomes)
        result["output"] = "\n".join(filter(None, [result["output"], (
            f"On CUDA (not scored): {len(cuda_session.outcomes) - failed} of {len(cuda_session.outcomes)} "
            "tests pass.")]))
    return result


def cuda_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def run_suite(assignment_id, stmts, ref_stmts, hide, limits, missing, banned_rules, broken, notes, device,
              keep_reference=False, only=None, statically_banned=frozenset()):
    """Start the workers (on `device`), run the hidden suite against them; (session, isolation).

    statically_banned: graded functions whose source calls a banned name; their tests are not run."""
    cuda = device == "cuda"
    student_worker = Worker(stmts, hide=hide, limits=limits, cuda=cuda) if not broken else None
    if keep_reference:
        key = (assignment_id, device, tuple(hide[:-1]))
        reference = reference_worker(key, ref_stmts, hide, limits, cuda)
        fresh = reference.process is None or reference.process.poll() is not None
    else:
        reference, fresh = Worker(ref_stmts, hide=hide, limits=limits, cuda=cuda), True
    with contextlib.ExitStack() as stack:
        if student_worker is not None:
            stack.enter_context(student_worker)
        if not keep_reference:
            stack.enter_context(reference)
        to_start = [w for w in (student_worker, reference if fresh else None) if w is not None]
        starters = [threading.Thread(target=_start, args=(w, notes)) for w in to_start]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        session = Session(Proxy(student_worker, missing, banned_rules, broken), Proxy(reference, {}, {}), device)
        _CURRENT.session = session
        try:
            with open_devnull_stdout():
                pytest.main([str(suite_path(assignment_id)), "-q", "--assert=plain", "-c",
                             str(SUITES / "pytest.ini"), "--rootdir", str(SUITES), "-p", "no:xdist",
                             # its collection of unraisable exceptions runs gc twice per session (0.5 s)
                             "-p", "no:unraisableexception",
                             "-W", "ignore"], plugins=[Collector(session, only, statically_banned)])
        finally:
            _CURRENT.session = None
        isolation = {}
        if student_worker is not None:
            for item in student_worker.load_errors:
                notes.append(f"{item['label']}: {item['error']}")
            isolation = student_worker.isolation
    return session, isolation


def _start(worker: Worker, notes: list) -> None:
    try:
        worker.start()
    except Exception as error:  # reported per test by the calls that follow
        notes.append(f"the notebook's code could not be started: {error}")


@contextlib.contextmanager
def open_devnull_stdout():
    """pytest prints its own report; the grader prints the student's summary instead."""
    import io
    saved = sys.stdout
    sys.stdout = io.StringIO()
    try:
        yield
    finally:
        sys.stdout = saved


def results(session: Session, located, static, notes, isolation) -> dict:
    banned = {name: set(uses) for name, uses in static.items()}
    for name, uses in session.student.banned_used.items():
        banned.setdefault(name, set()).update(uses)
    tests = []
    for outcome in session.outcomes:
        function = outcome["function"]
        score = outcome["max_score"] if outcome["passed"] else 0.0
        output = outcome["message"] if not outcome["passed"] else "passed"
        if function in banned:
            score = 0.0
            output = (f"{function} uses {', '.join(sorted(banned[function]))}, which this exercise does not "
                      "allow: it earns no points.")
        tests.append({"name": f"{function}: {outcome['name']}", "score": score, "max_score": outcome["max_score"],
                      "output": output, "tags": [function]})
    where = {name: (loc.how if loc.cell is not None else "not found") for name, loc in located.items()}
    return {
        "score": sum(t["score"] for t in tests),
        "max_score": sum(t["max_score"] for t in tests),
        "tests": tests,
        "output": "\n".join(notes) if notes else "",
        "extra": {"found_by": where, "isolation": isolation},
    }
