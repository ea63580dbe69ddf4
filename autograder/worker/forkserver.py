"""The fork server: a process that has imported PyTorch (and what every notebook imports) once,
and forks a fresh worker per request, so that starting a worker costs a fork.

It talks to the grading process over an inherited socket pair (no path anyone else could open).
For each worker it makes a new socket pair, forks the worker with one end, and hands the other
end to the grader with SCM_RIGHTS: no worker ever holds another's channel. When the grading
process goes away (ended, killed, Ctrl-C), its end closes; the fork server then kills every
worker it started and exits, and each worker also dies with the fork server (PR_SET_PDEATHSIG).

Requests, one JSON frame each: {"op": "spawn", "config", "env"} answers {"pid"} with the
worker's end of the channel attached; {"op": "status", "pid", "wait"} answers {"status"} (None
while it runs, a negative number for a signal).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time


def main(control_fd: int, preload: list[str]) -> None:
    import importlib

    for name in ["numpy", "torch"] + preload:
        try:
            importlib.import_module(name)
        except Exception:  # a notebook that needs it will say so when it imports it
            pass
    from . import serve
    from .channel import Channel, ChannelClosed, ChannelError, dumps

    control = socket.socket(fileno=control_fd)
    channel = Channel(os.dup(control_fd))
    children: dict[int, int | None] = {}

    def reap():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children[pid] = os.waitstatus_to_exitcode(status)

    try:
        while True:
            try:
                request = channel.receive()
            except (ChannelClosed, ChannelError):
                break
            reap()
            if request.get("op") == "status":
                pid = request.get("pid")
                deadline = time.monotonic() + (2 if request.get("wait", True) else 0)
                while children.get(pid) is None and pid in children and time.monotonic() < deadline:
                    time.sleep(0.02)
                    reap()
                status = children.get(pid)
                if status is not None:
                    children.pop(pid)
                channel.send({"status": status})
                continue
            ours, theirs = socket.socketpair()
            child = os.fork()
            if child == 0:
                try:
                    os.setsid()
                    from .isolation import die_with_parent

                    if not die_with_parent():
                        os._exit(1)
                    control.close()
                    channel.close()
                    ours.close()
                    null = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(null, fd)
                    os.environ.clear()
                    os.environ.update(request["env"])
                    fd = os.dup(theirs.fileno())
                    theirs.close()
                    os.closerange(3, fd)  # nothing of the fork server's or another worker's stays open
                    os.closerange(fd + 1, 1 << 16)
                    serve.warden(request["config"], fd)
                finally:
                    os._exit(0)
            theirs.close()
            children[child] = None
            reply = dumps({"pid": child})
            socket.send_fds(control, [len(reply).to_bytes(8, "big") + reply], [ours.fileno()])
            ours.close()
    finally:
        for pid, status in children.items():
            if status is None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(int(sys.argv[1]), json.loads(sys.argv[2]))
