"""Banned operations seen where they execute, whatever name reached them.

Two recorders, both in the process that runs one call of a graded function:

- callables: every banned Python callable (a named function or class, or everything a banned
  module defines, wherever the library keeps a reference to it) is replaced by a wrapper that
  notes a call made by the student's code itself (the nearest frame that is not plumbing such as
  `nn.Module.__call__` is the student's);
- operators: a TorchDispatchMode notes every dispatched operator the assignment bans
  (`torchvision::nms`, `aten::convolution`, ...) whichever Python name, library or alias reached
  it, unless the grader's own trusted code (a probe computing gradients) is the nearest caller.

A use is reported at once, as an event on the call's channel, so that nothing the call does
afterwards can take it back. Recording can only cost points: a function found using a banned
operation earns none, and no report is ever a reason to give points.
"""
from __future__ import annotations

import functools
import os
import sys
import types

ALLOW = "!"  # a banned-list entry "!name" allows name (and what it holds) inside a banned module
OPERATOR = "::"  # a banned-list entry with "::" names an operator: "torchvision::nms", "torchvision::*"
STUDENT_FILE = "<student"  # the file name of every code object the worker compiles from the notebook
# Frames that only pass a call on (nn.Module.__call__ to forward, autograd.Function.apply to
# forward, functools.partial...): the caller that counts is the one before them.
PLUMBING = (os.sep + os.path.join("torch", "nn", "modules", "module.py"),
            os.sep + os.path.join("torch", "autograd", "function.py"),
            os.sep + "functools.py")


class CallState:
    """What the running call of a graded function may not use, and what it used."""

    def __init__(self, function: str, names: set, operators: set, report):
        self.function, self.names, self.operators, self.report = function, names, operators, report
        self.used: set = set()

    def note(self, name: str) -> None:
        if name not in self.used:
            self.used.add(name)
            self.report(self.function, name)

    def bans_operator(self, name: str) -> bool:
        return name in self.operators or name.split(OPERATOR)[0] + OPERATOR + "*" in self.operators


_state: CallState | None = None
_trusted_files: set = set()


def trust(*modules) -> None:
    """Frames of these modules (the worker's probes and call runner) are the grader's own."""
    _trusted_files.update(module.__file__ for module in modules)


def _caller_is_student(frame, skip_plumbing: bool, through_libraries: bool) -> bool:
    """Whether the student's code is the caller that counts, walking up from `frame`."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(STUDENT_FILE):
            return True
        if filename in _trusted_files:
            return False
        if not through_libraries and not (skip_plumbing and filename.endswith(PLUMBING)):
            return False
        frame = frame.f_back
    return False


def _wrap(original, entries: frozenset):
    """A function that notes a student's call of `original` under `entries`, then calls it."""
    def recorded(*args, **kwargs):
        state = _state
        if state is not None and state.names & entries and _caller_is_student(sys._getframe(1), True, False):
            for entry in sorted(state.names & entries):
                state.note(entry)
        return original(*args, **kwargs)

    try:
        functools.update_wrapper(recorded, original)
    except (AttributeError, TypeError):
        pass
    recorded.__recorded_original__ = original
    return recorded


class CallableRecorder:
    """Wrappers around the banned callables of an assignment (its functions' banned names)."""

    def __init__(self, entries: list[str], allowed: list[str]):
        self.entries = sorted({e for e in entries if not e.startswith(ALLOW) and OPERATOR not in e})
        self.allowed = [a[len(ALLOW):] if a.startswith(ALLOW) else a for a in allowed]
        self.wrappers: dict[int, tuple] = {}  # id(original) -> (original, entries, wrapper)
        self.known: dict[int, object] = {}  # id of an original or of any wrapper made -> its original
        self.kept: list = []  # every wrapper made, so that no id is reused

    def install(self, namespace: dict | None = None) -> None:
        """Wrap what the loaded modules hold of the banned entries (again after the notebook is
        loaded: it may import more), then put the wrappers wherever a module, a class or the
        notebook's namespace keeps an original."""
        allowed = {id(o) for o in (_resolve(name) for name in self.allowed) if o is not None}
        found: dict[int, tuple] = {}  # id(original) -> (original, entries)
        sites: list[tuple] = []  # (class, attribute, kind, original)

        def add(value, entry):
            if id(value) in allowed:
                return
            if isinstance(value, type):
                for attribute, member in list(vars(value).items()):
                    inner = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                    inner = self.known.get(id(inner), inner)
                    if isinstance(inner, types.FunctionType) and id(inner) not in allowed:
                        found.setdefault(id(inner), (inner, set()))[1].add(entry)
                        sites.append((value, attribute, type(member) if member is not inner else None, inner))
            else:
                value = self.known.get(id(value), value)
                if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
                    found.setdefault(id(value), (value, set()))[1].add(entry)

        for entry in self.entries:
            target = _resolve(entry)
            if target is None:
                continue
            owner, _, attribute = entry.rpartition(".")
            owner = _resolve(owner) if owner else None
            if isinstance(owner, type):  # a method named in full: "torch.Tensor.backward"
                member = vars(owner).get(attribute)
                inner = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                inner = self.known.get(id(inner), inner)
                if isinstance(inner, types.FunctionType) and id(inner) not in allowed:
                    found.setdefault(id(inner), (inner, set()))[1].add(entry)
                    sites.append((owner, attribute, type(member) if member is not inner else None, inner))
                continue
            if isinstance(target, types.ModuleType):
                for module in [m for n, m in list(sys.modules.items())
                               if isinstance(m, types.ModuleType) and (n == entry or n.startswith(entry + "."))]:
                    for value in list(vars(module).values()):
                        if _defined_under(self.known.get(id(value), value), entry):
                            add(value, entry)
            else:
                add(target, entry)
        for key, (original, entries) in found.items():
            have = self.wrappers.get(key)
            if have is None or not entries <= have[1]:
                entries = frozenset(entries | (have[1] if have else set()))
                wrapper = _wrap(original, entries)
                self.wrappers[key] = (original, entries, wrapper)
                self.known[id(original)] = self.known[id(wrapper)] = original
                self.kept.append(wrapper)
        for owner, attribute, kind, original in sites:
            wrapper = self.wrappers[id(original)][2]
            try:
                setattr(owner, attribute, kind(wrapper) if kind else wrapper)
            except (AttributeError, TypeError):
                pass
        holders = [vars(m) for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)]
        if namespace is not None:
            holders.append(namespace)
        for holder in holders:
            for key, value in list(holder.items()):
                original = self.known.get(id(value))
                if original is not None:
                    wrapper = self.wrappers[id(original)][2]
                    if value is not wrapper:
                        try:
                            holder[key] = wrapper
                        except TypeError:
                            pass


def _defined_under(value, entry: str) -> bool:
    module = getattr(value, "__module__", None)
    if isinstance(value, types.BuiltinFunctionType):
        owner = getattr(value, "__self__", None)
        module = getattr(owner, "__name__", module) if isinstance(owner, types.ModuleType) else module
    return isinstance(module, str) and (module == entry or module.startswith(entry + "."))


def _resolve(dotted: str):
    """The object a dotted name names, among modules already imported (nothing is imported)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        value = module
        try:
            for attribute in parts[split:]:
                value = getattr(value, attribute)
        except AttributeError:
            return None
        return value
    return None


_mode_class = None


def operator_mode():
    """A TorchDispatchMode noting the banned operators of the running call."""
    global _mode_class
    if _mode_class is None:
        from torch.utils._python_dispatch import TorchDispatchMode

        class OperatorRecorder(TorchDispatchMode):
            def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
                state = _state
                if state is not None:
                    name = func._schema.name
                    if state.bans_operator(name) and _caller_is_student(sys._getframe(1), False, True):
                        state.note(name)
                return func(*args, **(kwargs or {}))

        _mode_class = OperatorRecorder
    return _mode_class()


class recording:
    """Record the banned uses of one call of `function` (a context manager)."""

    def __init__(self, function: str, names: list[str], operators: list[str], report, with_operators: bool):
        self.state = CallState(function, set(names), set(operators), report)
        self.mode = operator_mode() if with_operators and operators else None

    def __enter__(self):
        global _state
        _state = self.state
        if self.mode is not None:
            self.mode.__enter__()
        return self.state

    def __exit__(self, *exc):
        global _state
        if self.mode is not None:
            self.mode.__exit__(*exc)
        _state = None
