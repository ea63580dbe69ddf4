"""The grading process's side of the boundary: starting workers (autograder/worker/), talking to
them with deadlines, measuring their calls from outside, and ending them.

Nothing a worker says about itself is believed: a call's duration is this process's clock
around the request; whether a call changed its inputs is decided here by comparing fingerprints
of what was sent with what the worker holds afterwards; a banned use the worker reports can only
cost points. Every read has a deadline, every worker is killed with everything it started, and a
worker that misbehaves while loading is restarted a bounded number of times.
"""
from __future__ import annotations

import atexit
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from .worker import wire
from .worker.channel import Channel, ChannelClosed, ChannelError, ChannelTimeout, loads, loads_value
from .worker.isolation import cgroup_paths

PACKAGE = pathlib.Path(__file__).resolve().parent / "worker"
# What the fork server imports before forking (each worker then starts with them loaded).
PRELOAD = ["torchvision", "odcourse"]


@dataclass
class Limits:
    """Per-worker limits: wall-clock seconds per request, rlimits and cgroup limits, and how many
    times statements of the notebook may stop the worker while it loads."""

    call_seconds: float = 30.0
    start_seconds: float = 120.0
    memory_bytes: int = 6 * 2**30
    cpu_seconds: int = 600
    file_bytes: int = 16 * 2**20
    processes: int = 512
    load_restarts: int = 3

    def for_worker(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "cpu_seconds": self.cpu_seconds, "file_bytes": self.file_bytes,
                "processes": self.processes}


class WorkerError(Exception):
    """The worker could not answer: it timed out, died or sent something unreadable."""


class Deadline:
    """The end of a whole grading's time budget (None: no end)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        return float("inf") if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def limit(self, seconds: float) -> float:
        return max(0.0, min(seconds, self.remaining()))


def worker_env(scratch: pathlib.Path, cuda: bool) -> dict:
    """The scrubbed environment of a worker (and of the fork server it comes from)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0") if cuda else "",
            "TMPDIR": str(scratch)}


class ForkServer:
    """This process's fork server for CPU or CUDA workers (autograder/worker/forkserver.py), run
    from a private copy of the worker package. It lives as long as this process: when this
    process ends, however it ends, the fork server and every worker end with it."""

    _servers: dict = {}
    _guard = threading.Lock()

    def __init__(self, cuda: bool):
        self.lock = threading.Lock()
        self.home = pathlib.Path(tempfile.mkdtemp(prefix="autograder-forkserver-"))
        shutil.copytree(PACKAGE, self.home / "autograder_worker", ignore=shutil.ignore_patterns("__pycache__"))
        os.chmod(self.home, 0o755)
        ours, theirs = socket.socketpair()
        code = ("import sys; sys.path.insert(0, sys.argv[1]); from autograder_worker.forkserver import main; "
                "main(int(sys.argv[2]), __import__('json').loads(sys.argv[3]))")
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", code, str(self.home), str(theirs.fileno()), json.dumps(PRELOAD)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=worker_env(self.home, cuda), cwd=self.home, pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self.control = ours
        self.channel = Channel(os.dup(ours.fileno()))
        atexit.register(self.stop)

    @classmethod
    def get(cls, cuda: bool) -> "ForkServer":
        with cls._guard:
            server = cls._servers.get(cuda)
            if server is None or server.process.poll() is not None:
                server = cls._servers[cuda] = ForkServer(cuda)
            return server

    def spawn(self, config: dict, env: dict, timeout: float) -> tuple[int, Channel]:
        """Fork a worker; (its pid, the grader's end of its channel)."""
        with self.lock:
            try:
                self.channel.send({"op": "spawn", "config": config, "env": env}, timeout=timeout)
                self.control.settimeout(timeout)
                data, fds, _, _ = socket.recv_fds(self.control, 1 << 16, 1)
            except (ChannelError, OSError) as error:
                raise WorkerError(f"the fork server did not answer ({error})") from None
            finally:
                self.control.setblocking(False)
            if len(data) < 8 or not fds:
                for fd in fds:
                    os.close(fd)
                raise WorkerError("the fork server stopped")
            try:
                reply = loads(data[8:8 + int.from_bytes(data[:8], "big")])
            except ChannelError as error:
                os.close(fds[0])
                raise WorkerError(f"the fork server sent an unreadable answer ({error})") from None
        return int(reply["pid"]), Channel(fds[0])

    def status(self, pid: int, wait: bool = True) -> int | None:
        with self.lock:
            try:
                self.channel.send({"op": "status", "pid": pid, "wait": wait}, timeout=5)
                return self.channel.receive(timeout=10).get("status")
            except ChannelError:
                return None

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self.channel.close()
        self.control.close()
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass
class Reply:
    """One call's outcome, as this process saw it."""

    ok: bool
    value: object = None
    error: str = ""
    seconds: float = 0.0  # this process's clock: from the call's start (a timed call) or the request to the answer
    modified: list = field(default_factory=list)  # tensor arguments whose contents changed
    banned_used: set = field(default_factory=set)


@dataclass
class Worker:
    """One worker for one notebook's statements (a submission's, or the reference's)."""

    statements: list[dict]
    hide: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    cuda: bool = False
    banned: dict = field(default_factory=dict)  # graded function -> banned names
    operators: dict = field(default_factory=dict)  # graded function -> banned operators
    allowed: list = field(default_factory=list)  # exceptions inside banned modules
    fork_calls: bool = True  # every call in a fresh fork (a submission); False for the trusted reference
    deadline: Deadline = field(default_factory=lambda: Deadline(None))
    skip: set = field(default_factory=set)
    isolation: dict = field(default_factory=dict)
    load_errors: list = field(default_factory=list)
    names: list = field(default_factory=list)
    restarts: int = 0

    def __post_init__(self):
        self._pid = None
        self._channel = None
        self._home = None
        self._server = None
        self.banned_used: dict[str, set] = {}

    # starting -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start a fresh worker and load the notebook's statements (those not skipped)."""
        self.kill()
        if self.deadline.expired():
            raise WorkerError("the grading's time budget was used up")
        self._home = pathlib.Path(tempfile.mkdtemp(prefix="autograder-worker-"))
        scratch = self._home / "scratch"
        scratch.mkdir()
        os.chmod(self._home, 0o755)
        config = {"name": self._home.name, "scratch": str(scratch), "hide": self.hide, "cuda": self.cuda,
                  "limits": self.limits.for_worker(), "banned": self.banned, "operators": self.operators,
                  "allowed": self.allowed, "fork_calls": self.fork_calls,
                  "debug": os.environ.get("AUTOGRADER_DEBUG") == "1"}
        self._server = ForkServer.get(self.cuda)
        limit = self.deadline.limit(self.limits.start_seconds)
        self._pid, self._channel = self._server.spawn(config, worker_env(scratch, self.cuda), limit)
        try:
            ready = self._receive(self.deadline.limit(self.limits.start_seconds))
        except WorkerError:
            self.kill()
            raise
        self.isolation = ready.get("isolation", {})
        self._load()

    def alive(self) -> bool:
        """Started and not known to be dead (a worker that died is killed, and its channel closed,
        by the call that found out)."""
        return self._pid is not None and self._channel is not None

    def _load(self) -> None:
        keep = [i for i in range(len(self.statements)) if i not in self.skip]
        request = {"op": "load", "id": secrets.token_hex(16), "statements": [self.statements[i] for i in keep]}
        self._send(request)
        current = None
        load_until = time.monotonic() + self.limits.start_seconds
        while True:
            limit = min(self.limits.call_seconds, load_until - time.monotonic())
            try:
                reply = self._receive(self.deadline.limit(max(0.1, limit)), request["id"])
            except WorkerError:
                if current is None or self.deadline.expired() or time.monotonic() >= load_until:
                    raise
                self._skip_after_failure(keep, current)
                self.start()
                return
            if reply.get("op") == "progress":  # each statement gets the time limit of a call
                current = int(reply.get("index", 0))
                continue
            self.load_errors += [{"label": self.statements[keep[e["index"]]]["label"], "error": str(e["error"])}
                                 for e in reply.get("errors", []) if 0 <= e.get("index", -1) < len(keep)]
            self.names = reply.get("names", [])
            return

    def _skip_after_failure(self, keep: list[int], current: int) -> None:
        """The statement being run stopped the worker (crashed it, ended it, ran too long or broke
        its channel): skip it; after `load_restarts` such restarts, skip every statement from
        there on that runs code (definitions and imports still load)."""
        original = keep[min(current, len(keep) - 1)]
        self.skip.add(original)
        self.restarts += 1
        self.load_errors.append({"label": self.statements[original]["label"],
                                 "error": "running this statement stopped the notebook (it crashed the interpreter, "
                                          "exited, ran too long or wrote into the grader's channel); it was skipped"})
        if self.restarts >= self.limits.load_restarts:
            later = [i for i in keep if i > original and self.statements[i].get("runs_code", True)]
            self.skip.update(later)
            if later:
                self.load_errors.append({"label": self.statements[later[0]]["label"],
                                         "error": f"the notebook stopped the grader's worker {self.restarts} times "
                                                  f"while loading: {len(later)} later top-level statements that run "
                                                  "code were not run"})

    # calls --------------------------------------------------------------------------------
    def call(self, name: str, args=(), kwargs=None, scenario: str | None = None, seed: int = 0,
             seconds: float | None = None, probe: dict | None = None, record: bool = True,
             timed: bool = False, patience: float = 1.0) -> Reply:
        """Call the notebook's `name` in the worker. `timed`: in a fresh fork of the loaded
        state, after every other process has ended and every file made since loading is gone
        (what a speed check measures). The reply's `seconds` is this process's clock around it.
        The call may take `seconds` (default: the limits' call_seconds times `patience`)."""
        kwargs = kwargs or {}
        try:
            if not self.alive():
                self.start()
        except WorkerError as error:
            return Reply(False, error=f"the notebook's code could not be started ({error})")
        request = {"op": "timed" if timed else "call", "id": secrets.token_hex(16), "name": name,
                   "args": [wire.encode(a) for a in args], "kwargs": {k: wire.encode(v) for k, v in kwargs.items()},
                   "scenario": scenario, "seed": seed, "record": record,
                   "probe": {k: wire.encode(v) for k, v in probe.items()} if probe else None}
        sent = {key: wire.digest(value) for key, value in list(enumerate(args)) + list(kwargs.items())
                if _is_tensor(value)}
        limit = self.deadline.limit(seconds or self.limits.call_seconds * patience)
        started = time.perf_counter()
        try:
            self._send(request)
            header, value, began, ended = self._result(request["id"], limit, name)
        except WorkerError as error:
            elapsed = time.perf_counter() - started
            self._cancel(request["id"])
            if self.deadline.expired():
                return Reply(False, error="the grading's time budget was used up during this call", seconds=elapsed)
            return Reply(False, error=str(error), seconds=elapsed)
        elapsed = (ended or time.perf_counter()) - (began or started)
        head = name.split(".")[0]
        for used in header.get("banned_used", []):  # reported by a keeper that ran the call itself
            self.banned_used.setdefault(head, set()).add(str(used))
        reply = Reply(bool(header.get("ok")), error=str(header.get("error", "")), seconds=elapsed,
                      banned_used=set(self.banned_used.get(head, set())))
        digests = {_key(k): d for k, d in header.get("digests", []) if isinstance(d, str)}
        reply.modified = sorted((k for k, d in sent.items() if digests.get(k, d) != d), key=str)
        if reply.ok:
            try:
                reply.value = wire.decode(loads_value(value))
            except (ChannelError, ValueError, TypeError, KeyError, RecursionError, OverflowError, MemoryError) as error:
                reply.ok, reply.error = False, f"the result could not be read ({type(error).__name__})"
        return reply

    def _result(self, request_id: str, limit: float, name: str) -> tuple[dict, bytes, float | None, float | None]:
        """Read frames until the call's result: banned-use events first, as they happened; and, for
        a timed call, when its process said it was about to call the function and when it returned
        (this process's clock at each frame's arrival)."""
        until = time.monotonic() + limit
        began = ended = None
        while True:
            frame = self._receive_frame(max(0.0, until - time.monotonic()),
                                        f"no answer within {limit:.0f} s: the code ran too long (an endless loop?)")
            line, _, rest = frame.partition(b"\n")
            header = loads(line)
            if header.get("id") != request_id:
                self.kill()
                raise WorkerError("the worker sent something that is not the answer to the request")
            if header.get("op") == "banned":
                self.banned_used.setdefault(str(header.get("function")), set()).add(str(header.get("name")))
                continue
            if header.get("op") == "started" and began is None:
                began = time.perf_counter()
                continue
            if header.get("op") == "finished" and began is not None and ended is None:
                ended = time.perf_counter()
                continue
            if header.get("op") == "result":
                return header, rest, began, ended

    def _cancel(self, request_id: str) -> None:
        """After a timeout: ask the keeper to end the call; kill the worker if it does not say so."""
        if self._channel is None:
            return
        try:
            self._channel.send({"op": "cancel", "id": request_id}, timeout=2)
            until = time.monotonic() + 3
            while time.monotonic() < until:
                header = loads(self._channel.receive_frame(timeout=max(0.0, until - time.monotonic())).partition(b"\n")[0])
                if header.get("op") in ("cancelled", "result") and header.get("id") == request_id:
                    return
        except ChannelError:
            pass
        self.kill()

    # the channel --------------------------------------------------------------------------
    def _send(self, message: dict) -> None:
        try:
            self._channel.send(message, timeout=30)
        except ChannelError as error:
            self.kill()
            raise WorkerError(f"could not send to the worker ({error})") from None

    def _receive_frame(self, seconds: float, timeout_message: str = "") -> bytes:
        try:
            return self._channel.receive_frame(timeout=seconds)
        except ChannelTimeout:
            raise WorkerError(timeout_message or f"no answer within {seconds:.0f} s") from None
        except ChannelClosed:
            self.kill()
            raise WorkerError("the worker stopped") from None
        except ChannelError as error:
            self.kill()
            raise WorkerError(f"the worker sent an unreadable answer ({error})") from None

    def _receive(self, seconds: float, request_id: str | None = None) -> dict:
        frame = self._receive_frame(seconds, f"no answer within {seconds:.0f} s: the code ran too long (an endless loop?)")
        try:
            message = loads(frame.partition(b"\n")[0])
        except ChannelError as error:
            self.kill()
            raise WorkerError(f"the worker sent an unreadable answer ({error})") from None
        if request_id is not None and message.get("id") != request_id:
            self.kill()
            raise WorkerError("the worker sent something that is not the answer to the request")
        return message

    # pausing and ending -------------------------------------------------------------------
    def freeze(self) -> None:
        """Stop every process of the worker (while the other side is timed)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, number: int) -> None:
        if self._pid is not None:
            try:
                os.killpg(self._pid, number)
            except (ProcessLookupError, PermissionError):
                pass

    def kill(self) -> None:
        """Kill the worker and its process group (with it, its PID namespace and everything in it)."""
        if self._pid is not None:
            self._signal(signal.SIGKILL)
            if self._server is not None:
                self._server.status(self._pid)  # reap it
            self._pid = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._home is not None:
            remove_cgroups(self._home.name)
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def exit(self) -> None:
        if self._channel is not None:
            try:
                self._channel.send({"op": "exit"}, timeout=1)
            except ChannelError:
                pass
        self.kill()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.exit()


def _is_tensor(value) -> bool:
    return type(value).__module__.startswith("torch") and type(value).__name__ in ("Tensor", "Parameter")


def _key(key):
    return key if not isinstance(key, str) or not key.isdigit() else int(key)


def remove_cgroups(name: str) -> None:
    """Remove a worker's cgroups, killing what is left in them."""
    for group in map(pathlib.Path, cgroup_paths(name)):
        if not group.is_dir():
            continue
        for _ in range(50):
            try:
                pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            group.rmdir()
        except OSError:
            pass
