"""A worker: the only place a submission's code runs, and how it serves the grader.

    forked by the fork server ──> the warden (outside, trusted, no student code)
                                     │ joins its cgroups, enters new namespaces, forks
                                     ▼
                                  the keeper (process 1 of its PID namespace)
                                     │ isolates itself, loads the notebook's statements,
                                     │ then never runs a student function itself
                                     ▼ forks, per call
                                  a call process: runs one call (with its probe) and ends

The warden waits for the keeper and watches the grader's end of the channel: when the grader
goes (ended, killed, timed out), the keeper dies, and with process 1 its whole PID namespace.

The keeper holds the channel to the grader. Each call runs in a fresh fork of the keeper's
state just after loading, so a call sees nothing of earlier calls (no cache, no counter, no
global it changed), a crash or `os._exit` ends that call only, and after each call every other
process in the namespace is ended. The call process talks to the keeper over a socket pair of
its own; its answers must carry the request's random id, which only trusted code holds.

A CUDA worker (the unscored feedback run) and the reference's worker run ordinary calls in the
keeper itself (CUDA cannot be used after a fork; the reference is trusted); timed calls are
always forked, for both sides alike.
"""
from __future__ import annotations

import builtins
import gc
import linecache
import os
import select
import signal
import socket
import sys
import traceback

from . import isolation, policy, probes, recording, wire
from .channel import Channel, ChannelClosed, ChannelError


def warden(config: dict, channel_fd: int) -> None:
    """Entry of a forked worker: isolate in stages and serve; never returns."""
    held = {}
    if os.geteuid() == 0:
        held["cgroups"] = isolation.join_cgroups(config["name"], config["limits"])
    held.update(isolation.enter_namespaces())
    if held["namespaces"]:
        keeper_pid = os.fork()  # process 1 of the new PID namespace
        if keeper_pid:
            _watch(keeper_pid, channel_fd)
    keeper_main(config, channel_fd, held)
    os._exit(0)


def _watch(child: int, channel_fd: int) -> None:
    """Wait for the keeper; end it if the grader hangs up. Pass its end on: the same exit status
    or the same signal, so the grader sees how the keeper ended."""
    poller = select.poll()
    poller.register(channel_fd, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    while True:
        if poller.poll(200):
            os.kill(child, signal.SIGKILL)
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            break
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def keeper_main(config: dict, channel_fd: int, held: dict) -> None:
    if held.get("namespaces"):
        isolation.die_with_parent()
        held.update(isolation.isolate_filesystem(config["hide"], config["cuda"]))
    if held.get("private_tmp"):
        scratch = isolation.SCRATCH
    else:
        scratch = config["scratch"]
        isolation.fallback_scratch(scratch)
    os.environ.update(HOME=scratch, TMPDIR=os.path.dirname(scratch) if held.get("private_tmp") else scratch)
    os.chdir(scratch)
    held.update(isolation.limit_resources(config["limits"], "pids" in held.get("cgroups", {})
                                          or "v2" in held.get("cgroups", {})))
    held.update(isolation.drop_privileges())
    # Writing past the file-size limit raises OSError in the student's code instead of killing us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    Keeper(Channel(channel_fd), config, held, scratch).serve()


def student_namespace() -> dict:
    """The notebook's global namespace, with builtins that refuse what the screening refuses
    (a second line behind it): no dynamic code, imports only from the allowed modules, no file
    descriptors through open()."""
    allowed = {k: v for k, v in vars(builtins).items() if k not in policy.REFUSED_BUILTINS}
    allowed["__build_class__"] = builtins.__build_class__  # every class statement needs it
    allowed["__import__"] = _guarded_import
    allowed["open"] = _guarded_open
    return {"__name__": "__main__", "__builtins__": allowed}


_IMPORT_NAME = __import__("dis").opmap["IMPORT_NAME"]


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    # PyTorch's C++ code imports its own modules lazily through the builtins of whatever Python
    # frame is running (the student's): only an `import` statement of the notebook is checked.
    caller = sys._getframe(1)
    if not (caller.f_code.co_filename.startswith(recording.STUDENT_FILE)
            and caller.f_code.co_code[caller.f_lasti] == _IMPORT_NAME):
        return builtins.__import__(name, globals, locals, fromlist, level)
    if level:
        raise ImportError("relative imports are not available to notebook code")
    wanted = [name] + [f"{name}.{item}" for item in (fromlist or ()) if item != "*"]
    for module in wanted:
        if not policy.module_allowed(module) and (module == name or policy.refused_inside(module)
                                                  or module.rsplit(".", 1)[-1].startswith("_")):
            raise ImportError(f"{module} is not available to notebook code in the grader")
    return builtins.__import__(name, globals, locals, fromlist, level)


def _guarded_open(file, *args, **kwargs):
    if not isinstance(file, (str, bytes, os.PathLike)):
        raise TypeError("open() takes a path here; file descriptors are not available to notebook code")
    path = os.path.realpath(os.fsdecode(os.fspath(file)))
    parts = path.split(os.sep)
    if len(parts) > 2 and parts[1] == "proc" and (parts[2].isdigit() or parts[2] in ("self", "thread-self")):
        raise PermissionError(13, "Permission denied", os.fsdecode(os.fspath(file)))
    return builtins.open(file, *args, **kwargs)


def describe_error(error: BaseException) -> str:
    """What the grader may say of an exception raised in student code: its type and the line of
    the student's code it came from, never its message (which student code controls)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(recording.STUDENT_FILE)]
    where = f" at line {frames[-1].lineno} of {frames[-1].filename[len(recording.STUDENT_FILE) + 1:-1]}" if frames else ""
    name = type(error).__name__ if type(error).__module__ in ("builtins", "torch", "numpy") or not frames \
        else "an exception of the notebook's own class"
    return f"{name}{where}"


class Keeper:
    def __init__(self, channel: Channel, config: dict, held: dict, scratch: str):
        self.channel, self.config, self.held, self.scratch = channel, config, held, scratch
        self.namespace = student_namespace()
        self.fork_calls = config["fork_calls"] and not config["cuda"]
        self.is_init = os.getpid() == 1
        banned = config.get("banned", {})
        self.recorder = recording.CallableRecorder([n for names in banned.values() for n in names],
                                                   config.get("allowed", []))
        self.snapshot: dict = {}

    def serve(self) -> None:
        import numpy  # noqa: F401  (imported before the notebook's code, outside any call's time)
        import torch

        torch.set_num_threads(1)
        recording.trust(probes, sys.modules[__name__])
        self.recorder.install()
        self.channel.send({"op": "ready", "isolation": self.held})
        while True:
            try:
                message = self.channel.receive()
            except ChannelClosed:
                return
            except ChannelError:
                os._exit(3)  # the grader's side is broken; it will start a new worker
            op = message.get("op")
            if op == "exit":
                return
            if op == "load":
                self.load(message)
            elif op in ("call", "timed"):
                if op == "timed" or self.fork_calls:
                    self.forked_call(message, fresh=op == "timed")
                else:
                    self.channel.send_frame(b"".join(run_call(message, self.namespace, self.config, None)[0]))
            elif op == "cancel":  # a cancel that arrives after its call ended
                self.channel.send({"op": "cancelled", "id": message.get("id")})

    # loading ------------------------------------------------------------------------------
    def load(self, message: dict) -> None:
        errors = []
        for index, statement in enumerate(message["statements"]):
            self.channel.send({"op": "progress", "id": message["id"], "index": index})
            filename = f"{recording.STUDENT_FILE} {statement['label']}>"
            guarded = self.namespace["__builtins__"]
            if statement.get("course_code"):  # the released notebook's own cells, unchanged (the setup cell)
                self.namespace["__builtins__"] = vars(builtins)
            try:
                code = compile(statement["code"], filename, "exec")
                linecache.cache[filename] = (len(statement["code"]), None, statement["code"].splitlines(True),
                                             filename)
                exec(code, self.namespace)
            except BaseException as error:  # SystemExit and KeyboardInterrupt too: keep going
                errors.append({"index": index, "error": describe_error(error)})
            finally:
                self.namespace["__builtins__"] = guarded
            self.end_strays()
        self.recorder.install(self.namespace)  # what the notebook imported, and what it holds
        self.warm_up()
        # Every object so far lives as long as the keeper: the collector need not walk them, so a
        # call's fork does not copy every page the collector would touch.
        gc.collect()
        gc.freeze()
        self.snapshot = self.files()
        self.channel.send({"op": "loaded", "id": message["id"], "errors": errors,
                           "names": sorted(k for k in self.namespace if not k.startswith("__"))})

    def warm_up(self) -> None:
        """Run the trusted side of a call once here, so that the lazy imports and first-use setup
        of PyTorch it triggers (seeding, the dispatch mode, encoding) are in every fork's memory
        instead of being paid again by each call."""
        import torch

        namespace = {"__builtins__": vars(builtins), "warm": lambda x: x + 1}
        message = {"id": "warm-up", "name": "warm", "args": [wire.encode(torch.ones(2))], "kwargs": {}, "record": True}
        config = {"banned": {"warm": ["torchvision.ops"]}, "operators": {"warm": ["torchvision::*"]}}
        run_call(message, namespace, config, None)
        self.end_strays()

    # calls --------------------------------------------------------------------------------
    def forked_call(self, message: dict, fresh: bool) -> None:
        """Run one call in a fork of the keeper and pass its frames on. `fresh` (a timed call):
        first end every process and remove every file made since loading."""
        self.end_strays()
        if fresh:
            self.wipe()
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                os.close(self.channel.read_fd)
                link = Channel.of_socket(theirs)
                theirs.close()
                frames, _ = run_call(message, self.namespace, self.config, link)
                link.send_frame(b"".join(frames))
            finally:
                os._exit(0)
        theirs.close()
        link = Channel.of_socket(ours)
        ours.close()
        try:
            self._relay(link, pid, message)
        finally:
            link.close()
            self.end_strays()
            _reap(pid)

    def _relay(self, link: Channel, pid: int, message: dict) -> None:
        """Pass the call's events and result to the grader; a cancel from the grader ends the call."""
        poller = select.poll()
        poller.register(link.fileno(), select.POLLIN | select.POLLHUP)
        poller.register(self.channel.fileno(), select.POLLIN | select.POLLHUP)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self.channel.fileno() in ready:
                try:
                    request = self.channel.receive(timeout=5)
                except ChannelError:
                    os._exit(3)
                if request.get("op") == "cancel":
                    _kill(pid)
                    self.channel.send({"op": "cancelled", "id": message["id"]})
                    return
                continue
            try:
                frame = link.receive_frame(timeout=30)
                header = wire_header(frame)
            except ChannelClosed:
                self.channel.send({"op": "result", "id": message["id"], "ok": False, "error": _ended(pid)})
                return
            except ChannelError:
                _kill(pid)
                self.channel.send({"op": "result", "id": message["id"], "ok": False,
                                   "error": "the call's process sent something that is not an answer"})
                return
            if header.get("id") != message["id"]:
                _kill(pid)
                self.channel.send({"op": "result", "id": message["id"], "ok": False,
                                   "error": "the call's process sent something that is not an answer"})
                return
            self.channel.send_frame(frame)
            if header.get("op") == "result":
                return

    def end_strays(self) -> None:
        """As process 1 of our PID namespace, end every other process in it."""
        if not self.is_init:
            return
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break

    # files --------------------------------------------------------------------------------
    def _writable(self) -> list[str]:
        return ["/tmp", "/dev/shm"] if self.held.get("private_tmp") else [self.scratch]

    def files(self) -> dict:
        found = {}
        for top in self._writable():
            for folder, _, names in os.walk(top):
                for name in names:
                    path = os.path.join(folder, name)
                    try:
                        found[path] = os.lstat(path).st_mtime_ns
                    except OSError:
                        pass
        return found

    def wipe(self) -> None:
        """Remove every file made or changed since the notebook was loaded (a timed call must not
        find what an earlier call left)."""
        for path, mtime in self.files().items():
            if self.snapshot.get(path) != mtime:
                try:
                    os.remove(path)
                except OSError:
                    pass


def wire_header(frame: bytes) -> dict:
    """The header of a call's frame: its first line is a small JSON object (see run_call)."""
    from .channel import loads

    line, _, _ = frame.partition(b"\n")
    return loads(line)


def run_call(message: dict, namespace: dict, config: dict, link: Channel | None):
    """Run one call; return ([frame parts], ok). A frame is one JSON header line
    {"op": "result", "id", "ok", "error", "digests"} followed by the encoded value. Banned uses are
    sent at once as {"op": "banned", "id", "function", "name"} frames when `link` is given (a
    forked call); in the keeper itself they ride in the result's header."""
    import numpy
    import torch

    name = message["name"]
    head = name.split(".")[0]
    events = []

    def report(function, used):
        event = {"op": "banned", "id": message["id"], "function": function, "name": used}
        if link is not None:
            link.send_frame(wire_dumps(event))
        else:
            events.append(used)

    header = {"op": "result", "id": message["id"]}
    value_text = b""
    try:
        try:
            function = _resolve(namespace, name)
        except (KeyError, AttributeError):
            raise NotDefined from None
        args = [wire.decode(a) for a in message.get("args", [])]
        kwargs = {k: wire.decode(v) for k, v in message.get("kwargs", {}).items()}
        probe = {k: wire.decode(v) for k, v in message["probe"].items()} if message.get("probe") else None
        torch.manual_seed(message.get("seed", 0))
        numpy.random.seed(message.get("seed", 0))
        banned = config.get("banned", {}).get(head, [])
        operators = config.get("operators", {}).get(head, [])
        with Patched(scenario_patches(message.get("scenario"), namespace)):
            with recording.recording(head, banned, operators, report, with_operators=message.get("record", True)):
                if link is not None and message.get("op") == "timed":
                    # the grader's clock starts here: the fork, the decoding of the arguments and the
                    # setting up are not the function's time
                    link.send_frame(wire_dumps({"op": "started", "id": message["id"]}))
                value = probes.run(function, args, kwargs, probe) if probe else function(*args, **kwargs)
                if link is not None and message.get("op") == "timed":  # and stops here: encoding is not timed
                    link.send_frame(wire_dumps({"op": "finished", "id": message["id"]}))
        header["digests"] = [[key, wire.digest(tensor)] for key, tensor in _tensor_arguments(args, kwargs)]
        value_text = wire_dumps(wire.encode(value))
        header["ok"] = True
    except NotDefined:
        header.update(ok=False, error=f"NameError: {head} is not defined in the notebook")
    except BaseException as error:  # the student's exception, SystemExit included
        header.update(ok=False, error=describe_error(error))
        if config.get("debug"):  # a maintainer's run (AUTOGRADER_DEBUG=1), never a student's feedback
            header["error"] += "\n" + traceback.format_exc()
        value_text = b""
    if events:
        header["banned_used"] = events
    return [wire_dumps(header), b"\n", value_text], header.get("ok", False)


def wire_dumps(value) -> bytes:
    from .channel import dumps

    return dumps(value)


class NotDefined(Exception):
    """The requested name is not in the notebook's namespace."""


def _resolve(namespace, name):
    head, *rest = name.split(".")
    value = namespace[head]
    for attribute in rest:
        value = getattr(value, attribute)
    return value


def _tensor_arguments(args, kwargs):
    import torch

    for key, value in list(enumerate(args)) + list(kwargs.items()):
        if isinstance(value, torch.Tensor):
            yield key, value


def scenario_patches(name, namespace):
    """[(owner, attribute, replacement)]: conditions a hidden test asks for, set by trusted code
    around one call."""
    if not name:
        return []
    import io
    import pathlib

    import torch

    if name == "cuda_available":
        return [(torch.cuda, "is_available", lambda: True)]
    if name == "cuda_unavailable":
        return [(torch.cuda, "is_available", lambda: False)]
    if name == "no_system_files":
        def missing(*args, **kwargs):
            raise FileNotFoundError(2, "No such file or directory")

        patches = [(owner, attribute, missing) for owner, attribute in
                   [(builtins, "open"), (io, "open"), (pathlib.Path, "open"), (pathlib.Path, "read_text"),
                    (pathlib.Path, "read_bytes"), (os, "open")]]
        patches.append((namespace["__builtins__"], "open", missing))
        if "open" in namespace:
            patches.append((namespace, "open", missing))
        return patches
    raise ValueError(f"unknown scenario {name!r}")


class Patched:
    """Set attributes (or dict items) for the duration of a call, and put them back."""

    def __init__(self, patches):
        self.patches, self.saved = patches, []

    def __enter__(self):
        for owner, attribute, value in self.patches:
            if isinstance(owner, dict):
                self.saved.append((owner, attribute, owner.get(attribute, Patched), True))
                owner[attribute] = value
            else:
                self.saved.append((owner, attribute, getattr(owner, attribute), False))
                setattr(owner, attribute, value)

    def __exit__(self, *exc):
        for owner, attribute, value, is_dict in reversed(self.saved):
            if is_dict:
                if value is Patched:
                    owner.pop(attribute, None)
                else:
                    owner[attribute] = value
            else:
                setattr(owner, attribute, value)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _ended(pid: int) -> str:
    """How a call's process ended without answering."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "the call's process ended without answering"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else number
        return f"the code crashed the interpreter (signal {name})"
    return f"the code ended the process (exit status {os.waitstatus_to_exitcode(status)})"
