"""What a hidden test holds of a notebook: a proxy whose calls run in the notebook's worker.

    student.nms(boxes, scores, 0.5)                   a call; the value comes back as data
    student.call("nms", boxes, scores, 0.5, failure="nms failed on ... ({error})")
    student.timed("nms", boxes, scores, 0.5)          (value, seconds): a fresh fork, timed from here
    student.last_modified                             tensor arguments the last call changed

A failed call fails the test with a sentence naming the function and the kind of error, never
the error's message or a hidden input.
"""
from __future__ import annotations

import contextlib

from .checks import Finding
from .workers import Reply, Worker


class Proxy:
    def __init__(self, worker: Worker | None, missing: dict[str, str] | None = None, broken: str | None = None):
        self.worker, self.missing, self.broken = worker, missing or {}, broken
        self.last_call_seconds = 0.0  # this process's clock around the last request
        self.last_modified: list = []

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def call(self, name, *args, scenario=None, failure=None, seconds=None, probe=None, record=True, **kwargs):
        """Call `name` (a dotted name reaches an attribute: "RoIPoolFunction.apply") in the worker.

        probe: trusted code in the worker around the call (autograder/worker/probes.py):
        {"kind": "backward", "wrt": [argument positions], "grad_output": tensor} returns (value,
        gradients of sum(value * grad_output) with respect to those arguments);
        {"kind": "requires_grad", "wrt": [...]} says which results a gradient would flow back from;
        {"kind": "module", "inputs", "state_dict", "backward"} builds the module `name(*args)`;
        {"kind": "seeded", "seeds", "generator"} calls a random function under each seed;
        {"kind": "detector", "seed", "train", "eval"} builds, trains and evaluates a detector.
        """
        reply = self._reply(name, args, kwargs, scenario=scenario, seconds=seconds, probe=probe, record=record)
        return self._value(name, reply, failure)

    def timed(self, name, *args, probe=None, record=False, failure=None, seconds=None, patience=1.0, **kwargs):
        """(value, seconds) of a call in a fresh fork of the notebook's loaded state, after every
        other process has ended and every file made since loading is gone; the seconds are this
        process's clock around the request (the same for the reference and the student)."""
        reply = self._reply(name, args, kwargs, probe=probe, record=record, timed=True, seconds=seconds,
                            patience=patience)
        return self._value(name, reply, failure), reply.seconds

    @contextlib.contextmanager
    def frozen(self):
        """Every process of this notebook's worker stopped (while the other side is timed)."""
        if self.worker is not None:
            self.worker.freeze()
        try:
            yield
        finally:
            if self.worker is not None:
                self.worker.thaw()

    def _reply(self, name, args, kwargs, **options) -> Reply:
        if self.broken:
            raise Finding(self.broken)
        head = name.split(".")[0]
        if head in self.missing:
            raise Finding(f"{head} was not found in the notebook: {self.missing[head]}")
        reply = self.worker.call(name, args, kwargs, **options)
        self.last_call_seconds = reply.seconds
        self.last_modified = reply.modified
        return reply

    def _value(self, name, reply: Reply, failure):
        if not reply.ok:
            error = reply.error or "no answer"
            if error.startswith("NotImplementedError"):
                raise Finding(f"{name} is not implemented yet (it still raises NotImplementedError)")
            if failure:  # the test's own sentence; "{error}" in it stands for the kind of error
                raise Finding(failure.replace("{error}", error))
            raise Finding(f"{name} failed: {error}")
        return reply.value

    @property
    def banned_used(self) -> dict[str, set]:
        return self.worker.banned_used if self.worker is not None else {}
