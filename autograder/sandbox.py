"""Start, talk to and kill worker processes (autograder/worker.py) from the grading process.

A Worker runs one submission's code. Each request has a wall-clock limit; a worker that
overruns it, dies, or floods is killed with everything it started, and the next request starts a
fresh one (which loads the student's code again, skipping any statement that killed the last).
"""
from __future__ import annotations

import atexit
import json
import os
import pathlib
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from . import wire

HERE = pathlib.Path(__file__).resolve().parent


@dataclass
class Limits:
    """Per-worker limits. call_seconds is wall-clock per request; the rest are rlimits."""

    call_seconds: float = 30.0
    start_seconds: float = 120.0
    memory_bytes: int = 6 * 2**30
    cpu_seconds: int = 600
    file_bytes: int = 16 * 2**20
    processes: int = 512


class WorkerError(Exception):
    """The worker could not answer: it timed out, died or sent something unreadable."""


def worker_env(scratch: pathlib.Path, cuda: bool) -> dict:
    """The scrubbed environment of a worker (and of the fork server it may come from)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0") if cuda else "",
            "TMPDIR": str(scratch)}


class Zygote:
    """A fork server (worker.py --zygote) that has imported torch once and forks a fresh worker
    per request: starting a worker then costs a fork, not an interpreter and a torch import.
    The children isolate themselves exactly as a directly started worker does."""

    _servers: dict = {}

    def __init__(self, cuda: bool):
        self.lock = threading.Lock()
        self.home = pathlib.Path(tempfile.mkdtemp(prefix="autograder-zygote-"))
        for name in ("worker.py", "wire.py"):
            shutil.copy(HERE / name, self.home / name)
        os.chmod(self.home, 0o755)
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-B", str(self.home / "worker.py"), "--zygote"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=worker_env(self.home, cuda), cwd=self.home, start_new_session=True)
        atexit.register(self.stop)

    @classmethod
    def get(cls, cuda: bool) -> "Zygote | None":
        """The fork server of this process for CPU or CUDA workers; None where it cannot run."""
        server = cls._servers.get(cuda)
        if server is None or server.process.poll() is not None:
            try:
                server = cls._servers[cuda] = Zygote(cuda)
            except OSError:
                return None
        return server

    def ask(self, request: dict) -> dict:
        with self.lock:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise WorkerError("the fork server stopped")
        return json.loads(line)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass
class Worker:
    """One isolated worker process for one submission's code."""

    statements: list[dict]
    hide: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    cuda: bool = False
    skip: set = field(default_factory=set)
    process: subprocess.Popen | None = None
    isolation: dict = field(default_factory=dict)
    load_errors: list = field(default_factory=list)
    names: list = field(default_factory=list)
    use_zygote: bool = True

    def start(self) -> None:
        """Start a fresh worker and load the student's statements (those not skipped)."""
        self.kill()
        self._home = pathlib.Path(tempfile.mkdtemp(prefix="autograder-worker-"))
        code = self._home / "code"
        scratch = self._home / "scratch"
        code.mkdir()
        scratch.mkdir()
        os.chmod(self._home, 0o755)
        os.chmod(code, 0o755)
        config = {"name": self._home.name, "scratch": str(scratch), "hide": self.hide,
                  "limits": {"memory_bytes": self.limits.memory_bytes, "cpu_seconds": self.limits.cpu_seconds,
                             "file_bytes": self.limits.file_bytes, "processes": self.limits.processes}}
        env = worker_env(scratch, self.cuda)
        zygote = Zygote.get(self.cuda) if self.use_zygote else None
        if zygote is not None:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(self._home / "socket"))
            listener.listen(1)
            listener.settimeout(self.limits.start_seconds)
            try:
                self._pid = zygote.ask({"op": "spawn", "config": config, "socket": str(self._home / "socket"),
                                        "log": str(self._home / "output.log"), "env": env})["pid"]
                self._zygote = zygote
                connection, _ = listener.accept()
            except (socket.timeout, OSError) as error:
                raise WorkerError(f"the worker did not start ({error})") from None
            finally:
                listener.close()
            connection.settimeout(None)
            self._inbox = self._outbox = wire.SocketStream(connection)
        else:
            for name in ("worker.py", "wire.py"):
                shutil.copy(HERE / name, code / name)
            to_worker, worker_in = os.pipe()
            worker_out, from_worker = os.pipe()
            config.update(inbox_fd=to_worker, outbox_fd=from_worker)
            (code / "config.json").write_text(json.dumps(config))
            self._log = open(self._home / "output.log", "wb")
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-B", str(code / "worker.py"), str(code / "config.json")],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env, cwd=scratch,
                pass_fds=(to_worker, from_worker), start_new_session=True)
            self._pid, self._zygote = self.process.pid, None
            os.close(to_worker)
            os.close(from_worker)
            self._inbox = os.fdopen(worker_in, "wb", buffering=0)
            self._outbox = os.fdopen(worker_out, "rb", buffering=0)
        ready = self._receive(self.limits.start_seconds)
        self.isolation = ready.get("isolation", {})
        self._load()

    def alive(self) -> bool:
        if getattr(self, "_pid", None) is None:
            return False
        if self._zygote is None:
            return self.process is not None and self.process.poll() is None
        try:
            os.kill(self._pid, 0)
            return True
        except ProcessLookupError:
            return False

    def _load(self) -> None:
        keep = [s for i, s in enumerate(self.statements) if i not in self.skip]
        self._send({"op": "load", "statements": keep})
        deadline = time.monotonic() + self.limits.call_seconds
        current = None
        while True:
            try:
                reply = self._receive(max(0.1, deadline - time.monotonic()))
            except WorkerError:
                if current is None:
                    raise
                # This statement killed the worker or ran too long: start again without it.
                original = [i for i in range(len(self.statements)) if i not in self.skip][current]
                self.skip.add(original)
                self.load_errors.append({"label": self.statements[original]["label"],
                                         "error": "running this statement stopped the notebook "
                                                  "(it crashed the interpreter, exited or ran too long)"})
                self.start()
                return
            if reply["op"] == "progress":  # each statement gets the time limit of a call
                current = reply["index"]
                deadline = time.monotonic() + self.limits.call_seconds
                continue
            self.load_errors += [{"label": keep[e["index"]]["label"], "error": e["error"]} for e in reply["errors"]]
            self.names = reply["names"]
            return

    def call(self, name: str, args=(), kwargs=None, scenario: str | None = None, banned=(), seed: int = 0,
             seconds: float | None = None, probe: dict | None = None) -> dict:
        """Call the student's `name`; return the reply dict (ok, value, error, seconds, banned_used).

        A worker that does not answer within the limit is killed and the reply says so; the next
        call starts a fresh worker.
        """
        if not self.alive():
            self.start()
        message = {"op": "call", "name": name, "args": [wire.encode(a) for a in args],
                   "kwargs": {k: wire.encode(v) for k, v in (kwargs or {}).items()},
                   "scenario": scenario, "banned": list(banned), "seed": seed,
                   "probe": {k: wire.encode(v) for k, v in probe.items()} if probe else None}
        limit = seconds or self.limits.call_seconds
        started = time.monotonic()
        try:
            self._send(message)
            reply = self._receive(limit)
        except WorkerError as error:
            self.kill()
            return {"ok": False, "error": str(error), "banned_used": [], "wall_seconds": time.monotonic() - started}
        reply["wall_seconds"] = time.monotonic() - started
        if reply.get("ok"):
            try:
                reply["value"] = wire.decode(reply["value"])
            except (ValueError, TypeError, KeyError) as error:
                reply.update(ok=False, error=f"the result could not be read: {error}")
        return reply

    def _send(self, message) -> None:
        try:
            self._inbox.write(wire.dumps(message))
        except (BrokenPipeError, OSError) as error:
            raise WorkerError(self._death_note(f"could not send to the worker ({error})")) from None

    def _receive(self, seconds: float) -> dict:
        ready, _, _ = select.select([self._outbox], [], [], seconds)
        if not ready:
            raise WorkerError(f"no answer within {seconds:.0f} s: the code ran too long (an endless loop?)")
        try:
            message = wire.read_message(self._outbox)
        except (ValueError, json.JSONDecodeError) as error:
            raise WorkerError(f"the worker sent an unreadable answer ({error})") from None
        if message is None:
            raise WorkerError(self._death_note("the worker stopped"))
        return message

    def _death_note(self, what: str) -> str:
        if getattr(self, "_zygote", None) is not None:
            status = self._zygote.ask({"op": "status", "pid": self._pid}).get("status")
            if status is None:
                return what
        elif self.process is None:
            return what
        else:
            try:
                status = self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                return what
        if status < 0:
            name = signal.Signals(-status).name if -status in signal.Signals._value2member_map_ else -status
            return f"{what}: the code crashed the interpreter (signal {name})"
        return f"{what}: the code ended the process (exit status {status})"

    def output(self, limit: int = 4000) -> str:
        """The start of what the student's code printed (stdout and stderr)."""
        try:
            with open(self._home / "output.log", "rb") as handle:
                return handle.read(limit).decode(errors="replace")
        except (OSError, AttributeError):
            return ""

    def kill(self) -> None:
        """Kill the worker and its process group (with it, its PID namespace and everything in it)."""
        pid = getattr(self, "_pid", None)
        if pid is not None:
            gone = False
            if self._zygote is not None:
                # Once the fork server has reaped our worker its pid may belong to someone else's
                # new worker: only a worker not yet reaped (running, or a zombie) is signalled.
                try:
                    gone = self._zygote.ask({"op": "status", "pid": pid, "wait": False}).get("status") is not None
                except (WorkerError, OSError, ValueError):
                    gone = True
            if not gone:
                try:
                    os.killpg(pid, signal.SIGKILL)  # the worker leads its own session and group
                except (ProcessLookupError, PermissionError):
                    pass
            if self._zygote is None and self.process is not None:
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            elif self._zygote is not None and not gone:
                try:
                    self._zygote.ask({"op": "status", "pid": pid})  # reap it
                except (WorkerError, OSError, ValueError):
                    pass
            for stream in {id(s): s for s in (getattr(self, "_inbox", None), getattr(self, "_outbox", None),
                                               getattr(self, "_log", None)) if s is not None}.values():
                try:
                    stream.close()
                except OSError:
                    pass
            self.process = None
            self._pid = None
        home = getattr(self, "_home", None)
        if home is not None:
            remove_cgroups(home.name)
            shutil.rmtree(home, ignore_errors=True)
            self._home = None

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        if self.alive():
            try:
                self._send({"op": "exit"})
            except WorkerError:
                pass
        self.kill()


def remove_cgroups(name: str) -> None:
    """Remove the worker's cgroups (autograder/<name> under each hierarchy), killing what is left."""
    # The hierarchies worker.join_cgroups uses; walking all of /sys/fs/cgroup costs ~0.1 s a kill.
    for base in ("pids", "memory", "unified", ""):
        group = pathlib.Path("/sys/fs/cgroup", base, "autograder", name)
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
