"""The worker: the only process in which a student's code runs.

Started by autograder.sandbox as ``python -I worker.py <config.json>`` from a private copy of
this file and wire.py (never from the course tree). Before it reads any student code it isolates
itself, as far as the operating system allows, and says in its first message what held:

- a new network namespace (no network) and a new mount namespace in which the course's hidden
  folders (hidden suites, solutions, submissions, the gradebook) are covered by empty ones;
- resource limits: address space, CPU seconds, file size, processes, no core files;
- a scratch working directory, a scrubbed environment (set by the parent) and, when started as
  root, no capabilities left.

Then it serves requests over two pipes in the length-prefixed JSON of wire.py:
``load`` (execute the student's statements one by one, reporting progress so that a statement
that kills the process can be skipped on restart) and ``call`` (call a graded function with
decoded arguments under a named scenario, recording any banned call, and send the result back).
Standard output and error go to a capped log file, never to the grader.
"""
import ctypes
import ctypes.util
import importlib
import json
import os
import resource
import signal
import sys
import time
import traceback

# `python -I` puts neither the script's folder nor the working directory on sys.path, so nothing
# a student writes into the scratch folder can shadow a module; wire.py sits beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG = 24, 38, 1
LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def mount(source, target, fstype, flags, data=None):
    encode = lambda v: v.encode() if isinstance(v, str) else v  # noqa: E731
    return LIBC.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) == 0


def join_cgroups(name, limits):
    """Put this process in its own pids (and memory) cgroup, v1 or v2, where /sys/fs/cgroup is
    writable: a fork bomb then stops at pids.max instead of filling the machine's process table."""
    joined = {}
    candidates = [("pids", "/sys/fs/cgroup/pids", {"pids.max": str(limits["processes"])}),
                  ("memory", "/sys/fs/cgroup/memory", {"memory.limit_in_bytes": str(limits["memory_bytes"])}),
                  ("unified", "/sys/fs/cgroup/unified", {"pids.max": str(limits["processes"])}),
                  ("v2", "/sys/fs/cgroup", {"pids.max": str(limits["processes"]),
                                            "memory.max": str(limits["memory_bytes"])})]
    for label, base, settings in candidates:
        if not os.path.isdir(base) or (label == "v2" and not os.path.exists(base + "/cgroup.controllers")):
            continue
        path = os.path.join(base, "autograder", name)
        try:
            os.makedirs(path, exist_ok=True)
            written = []
            for key, value in settings.items():
                if os.path.exists(os.path.join(path, key)):
                    with open(os.path.join(path, key), "w") as handle:
                        handle.write(value)
                    written.append(key)
            if not written:
                continue
            with open(os.path.join(path, "cgroup.procs"), "w") as handle:
                handle.write(str(os.getpid()))
            joined[label] = written
        except OSError:
            continue
    return joined


def drop_capabilities():
    """Keep uid 0 but without any capability: no remount, no unmount, no kill outside the PID
    namespace, no writes outside the scratch folder (the rest is mounted read-only). Not another
    user id: the Python installation may be readable by root alone (as under /root here)."""
    for capability in range(64):
        LIBC.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    return LIBC.capset(header, data) == 0


def read_only_everywhere(writable):
    """Remount every mount point read-only except `writable` (the scratch folder)."""
    mount(writable, writable, None, MS_BIND | MS_REC)
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            points.append(point)
    failed = []
    for point in points:
        if point == writable or point.startswith("/dev"):
            continue
        if not mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID):
            failed.append(point)
    return not failed


def isolate(config):
    """Apply the isolation the OS permits; return what held, by name."""
    held = {"cgroups": join_cgroups(config["name"], config["limits"]) if os.geteuid() == 0 else {}}
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID
    if LIBC.unshare(flags) != 0:
        held["namespaces"] = False
        held["network"] = LIBC.unshare(CLONE_NEWNET) == 0
    else:
        held["namespaces"] = held["network"] = True
        # The next child is process 1 of the new PID namespace: it runs everything, so nothing
        # here can see or signal the grader. This process only waits and passes on its status.
        child = os.fork()
        if child:
            _, status = os.waitpid(child, 0)
            if os.WIFSIGNALED(status):  # die the same way, so the grader sees the signal
                signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
                LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no core file
                os.kill(os.getpid(), os.WTERMSIG(status))
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        hidden = []
        for path in config["hide"]:
            if os.path.isdir(path):
                ok = mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=000")
            elif os.path.exists(path):
                ok = mount("/dev/null", path, None, MS_BIND)
            else:
                ok = True
            if ok:
                hidden.append(path)
        held["hidden"] = sorted(hidden)
        held["read_only"] = read_only_everywhere(config["scratch"])
    limits = config["limits"]
    for name, value in (("RLIMIT_AS", limits["memory_bytes"]), ("RLIMIT_CPU", limits["cpu_seconds"]),
                        ("RLIMIT_FSIZE", limits["file_bytes"]), ("RLIMIT_NPROC", limits["processes"]),
                        ("RLIMIT_CORE", 0)):
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            held[name] = value
        except (ValueError, OSError):
            held[name] = None
    os.chdir(config["scratch"])
    if os.geteuid() == 0:
        held["user"] = "root without capabilities" if drop_capabilities() else "root"
    else:
        held["user"] = f"uid {os.getuid()}"
    LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # Writing past the file-size limit raises OSError in the student's code instead of killing us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return held


# Scenarios: conditions a hidden test asks for, applied by trusted code around one call.
def _no_system_files():
    import builtins
    import io
    import pathlib

    def missing(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    return [(builtins, "open"), (io, "open"), (pathlib.Path, "open"), (pathlib.Path, "read_text"),
            (pathlib.Path, "read_bytes"), (os, "open")], missing


def scenario_patches(name, namespace):
    """[(owner, attribute, replacement)] for a scenario name."""
    if not name:
        return []
    import torch

    if name == "cuda_available":
        return [(torch.cuda, "is_available", lambda: True)]
    if name == "cuda_unavailable":
        return [(torch.cuda, "is_available", lambda: False)]
    if name == "no_system_files":
        targets, missing = _no_system_files()
        patches = [(owner, attribute, missing) for owner, attribute in targets]
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


def _tensor_copies(args, kwargs):
    """Copies of the tensor arguments, to tell afterwards whether the call changed them in place."""
    import torch

    named = list(enumerate(args)) + list(kwargs.items())
    return [(key, value.detach().clone()) for key, value in named if isinstance(value, torch.Tensor)]


def _modified(originals, args, kwargs):
    """The positions (or keyword names) of the tensor arguments that the call changed."""
    changed = []
    for key, before in originals:
        after = args[key] if isinstance(key, int) else kwargs[key]
        same = (after.shape == before.shape and after.dtype == before.dtype
                and bool(((after == before) | (after != after) & (before != before)).all()))
        if not same:
            changed.append(key)
    return changed


def trusted_caller(frame) -> bool:
    """Calls made by the grader's probes or by autograd's own machinery (gradcheck) are not the
    student's use of a banned name (a probe computes gradients with torch.autograd.grad)."""
    return (frame.f_code in (run_probe.__code__, probe_module.__code__, probe_seeded.__code__,
                             probe_detector.__code__, _train_detector.__code__)
            or frame.f_globals.get("__name__", "").startswith("torch.autograd"))


def banned_recorders(banned, used):
    """Wrap each banned callable ("module.attr" or "module.Class.attr") to record its use."""
    patches = []
    for dotted in banned:
        if dotted.startswith("!"):  # an allowed exception (banned.ALLOW), for the static check only
            continue
        parts = dotted.split(".")
        for split in range(len(parts) - 1, 0, -1):
            try:
                owner = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            try:
                for attribute in parts[split:-1]:
                    owner = getattr(owner, attribute)
                original = getattr(owner, parts[-1])
            except AttributeError:
                break
            if callable(original):
                def recorder(*args, _original=original, _name=dotted, **kwargs):
                    if not trusted_caller(sys._getframe(1)):
                        used.add(_name)
                    return _original(*args, **kwargs)
                patches.append((owner, parts[-1], recorder))
            break
    return patches


class NotDefined(Exception):
    """The requested name is not in the notebook's namespace."""


def resolve(namespace, name):
    """namespace[name], or an attribute of it for a dotted name ("RoIPoolFunction.apply")."""
    head, *rest = name.split(".")
    value = namespace[head]
    for attribute in rest:
        value = getattr(value, attribute)
    return value


def call_student(function, *args, **kwargs):
    """The probes call the student's code from here, a frame that trusted_caller does not trust,
    so that nothing the student's code calls is ever taken for the probe's own work."""
    return function(*args, **kwargs)


def run_probe(function, args, kwargs, probe):
    """Trusted code around a call that the suites cannot do from the grading process, where no
    student code may run: gradients through the student's function, gradcheck, a module built by
    the student's class, and calls under many random seeds."""
    import torch

    if probe["kind"] == "module":
        return probe_module(function, args, kwargs, probe)
    if probe["kind"] == "seeded":
        return probe_seeded(function, args, kwargs, probe)
    if probe["kind"] == "detector":
        return probe_detector(function, args, kwargs, probe)
    args = list(args)
    wrt = [int(i) for i in probe["wrt"]]
    for i in wrt:
        args[i] = args[i].detach().clone().requires_grad_(True)
    if probe["kind"] == "gradcheck":
        def with_inputs(*inputs):
            call = list(args)
            for i, tensor in zip(wrt, inputs):
                call[i] = tensor
            return call_student(function, *call, **kwargs)
        try:
            torch.autograd.gradcheck(with_inputs, tuple(args[i] for i in wrt), eps=1e-6, atol=1e-5, rtol=1e-3)
        except NotImplementedError:  # the stub: reported as not implemented, not as a wrong gradient
            raise
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return f"failed: {first[:300]}"
        return "passed"
    if probe["kind"] == "requires_grad":  # does a gradient flow back from each tensor of the result?
        with torch.enable_grad():
            value = call_student(function, *args, **kwargs)
        outputs = list(value) if isinstance(value, (tuple, list)) else [value]
        return [bool(v.requires_grad) if isinstance(v, torch.Tensor) else None for v in outputs]
    if probe["kind"] == "backward":
        with torch.enable_grad():
            value = call_student(function, *args, **kwargs)
        # A tuple of tensors (two losses) takes a tuple of grad_outputs, one each.
        outputs = list(value) if isinstance(value, (tuple, list)) else [value]
        grad_outputs = probe.get("grad_output")
        if grad_outputs is None:  # ones: d(sum of the result)
            grad_outputs = [torch.ones_like(v) if isinstance(v, torch.Tensor) else None for v in outputs]
        grad_outputs = list(grad_outputs) if isinstance(grad_outputs, (tuple, list)) else [grad_outputs]
        if len(outputs) != len(grad_outputs) or not all(isinstance(v, torch.Tensor) for v in outputs):
            raise TypeError(f"the result must be {len(grad_outputs)} tensor(s), not {type(value).__name__}")
        if not all(v.requires_grad or v.numel() == 0 for v in outputs):  # an empty result has a zero gradient
            raise TypeError("the result does not depend on the input through operations that autograd can "
                            "follow (it has no grad_fn)")
        pairs = [(v, g.to(dtype=v.dtype, device=v.device)) for v, g in zip(outputs, grad_outputs) if v.requires_grad]
        grads = (torch.autograd.grad([v for v, _ in pairs], [args[i] for i in wrt], grad_outputs=[g for _, g in pairs],
                                     allow_unused=True) if pairs else [None] * len(wrt))
        grads = tuple(torch.zeros_like(args[i]) if g is None else g.detach() for i, g in zip(wrt, grads))
        if probe.get("discard"):  # timing a training step: nothing to send back
            return None
        detached = tuple(v.detach() for v in outputs)
        return (detached if isinstance(value, (tuple, list)) else detached[0]), grads
    raise ValueError(f"unknown probe {probe['kind']!r}")


def probe_module(cls, args, kwargs, probe):
    """Build `cls(*args, **kwargs)` (a torch.nn.Module) and report on it:
    {"state": its state dict as built}, and with probe["inputs"] (the forward's one argument,
    tensors or lists of them) also {"outputs": the forward's result, detached}, after loading
    probe["state_dict"] when given; with probe["backward"] also {"gradients": of the sum of all
    outputs with respect to each parameter, by name}."""
    import torch

    module = call_student(cls, *args, **kwargs)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{getattr(cls, '__name__', cls)}(...) made a {type(module).__name__}, not a torch.nn.Module")
    report = {"state": {k: v.detach().clone() for k, v in module.state_dict().items()}}
    if probe.get("inputs") is None:
        return report
    if probe.get("state_dict") is not None:
        module.load_state_dict(probe["state_dict"])
    inputs = probe["inputs"]
    device = next((t.device for t in _tensors(inputs)), torch.device("cpu"))
    module.to(device)
    with torch.enable_grad():
        outputs = call_student(module, inputs)
    report["outputs"] = outputs  # wire.encode sends tensors detached
    if probe.get("backward"):
        flat = [t for t in _tensors(outputs) if t.requires_grad]
        if not flat:
            raise TypeError("the module's outputs do not depend on its parameters through operations autograd can follow")
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(sum(t.sum() for t in flat), [p for _, p in named], allow_unused=True)
        report["gradients"] = {k: (torch.zeros_like(p) if g is None else g.detach()) for (k, p), g in zip(named, grads)}
    return report


def probe_detector(build, args, kwargs, probe):
    """Build a detector with `build(*args, **kwargs)` and use it as torchvision's detection models
    are used, reporting what happened (the suite judges it):

    probe["seed"]: torch.manual_seed before building (and so before training);
    probe["train"] = {"images", "targets", "steps", "lr"} (optional): `steps` steps of Adam on the
    sum of the losses of model(images, targets) in training mode, one batch; reported: "keys",
    "scalar", "finite", "requires_grad" (of the first call's losses, per key), "parameters" and
    "parameters_with_gradient" (after the first backward pass), "losses" (float[steps, keys]),
    "train_seconds";
    probe["eval"] = images (optional): "outputs", model(images) in evaluation mode, under no_grad;
    "inputs_unchanged": whether every image and target tensor was left as it was.
    """
    import torch

    torch.manual_seed(int(probe.get("seed", 0)))
    model = call_student(build, *args, **kwargs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"build_detector(...) returned a {type(model).__name__}, not a torch.nn.Module")
    given = [probe.get("train") or {}, {"eval": probe.get("eval")}]
    copies = [t.clone() for t in _tensors(given)]
    device = next((t.device for t in _tensors(given)), torch.device("cpu"))
    model.to(device)
    report = {}
    if probe.get("train"):
        report.update(_train_detector(model, probe["train"]))
    if probe.get("eval") is not None:
        model.eval()
        with torch.no_grad():
            report["outputs"] = call_student(model, probe["eval"])
    report["inputs_unchanged"] = all(a.shape == b.shape and torch.equal(a, b)
                                     for a, b in zip(copies, _tensors(given)))
    return report


def _train_detector(model, train):
    """Adam on the sum of the losses, one batch, `steps` times; see probe_detector."""
    import time

    import torch

    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=float(train["lr"]))
    report, history = {}, []
    started = time.perf_counter()
    for step in range(int(train["steps"])):
        losses = call_student(model, train["images"], train["targets"])
        if not isinstance(losses, dict) or not losses:
            raise TypeError(f"in training mode the model must return a dict of losses, not {type(losses).__name__}")
        keys = sorted(losses)
        if step == 0:
            report["keys"] = [str(k) for k in keys]
            report["scalar"] = [isinstance(losses[k], torch.Tensor) and losses[k].dim() == 0 for k in keys]
            report["finite"] = [isinstance(losses[k], torch.Tensor) and bool(torch.isfinite(losses[k]).all())
                                for k in keys]
            report["requires_grad"] = [isinstance(losses[k], torch.Tensor) and losses[k].requires_grad for k in keys]
            if not all(report["scalar"]) or not any(report["requires_grad"]):
                return report
        total = sum(losses[k].sum() for k in keys if isinstance(losses[k], torch.Tensor) and losses[k].requires_grad)
        optimizer.zero_grad()
        total.backward()
        if step == 0:
            report["parameters"] = len(parameters)
            report["parameters_with_gradient"] = sum(p.grad is not None and bool(p.grad.abs().sum() > 0)
                                                     for p in parameters)
        optimizer.step()
        history.append([float(losses[k].detach()) for k in keys])
    report["losses"] = torch.tensor(history, dtype=torch.float64)
    report["train_seconds"] = time.perf_counter() - started
    return report


def probe_seeded(function, args, kwargs, probe):
    """The function's results under each of probe["seeds"]: a torch.Generator seeded with it passed
    as `generator=` (probe["generator"] true; on the first tensor argument's device), or the global
    generator seeded with torch.manual_seed. Results that are tuples of same-shaped tensors come
    back stacked (one row per seed)."""
    import torch

    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    results = []
    for seed in probe["seeds"]:
        if probe.get("generator"):
            generator = torch.Generator(device=device).manual_seed(int(seed))
            results.append(call_student(function, *args, generator=generator, **kwargs))
        else:
            torch.manual_seed(int(seed))
            results.append(call_student(function, *args, **kwargs))
    try:
        return tuple(torch.stack([r[i].detach() for r in results]) for i in range(len(results[0])))
    except Exception:
        return results  # as they came (wire.encode sends tensors detached)


def _tensors(value):
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def describe_error(error):
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith("<student")]
    where = f" (line {frames[-1].lineno} of {frames[-1].name}, {frames[-1].filename[1:-1]})" if frames else ""
    text = str(error)
    if len(text) > 500:
        text = text[:500] + "..."
    return f"{type(error).__name__}: {text}{where}"


def serve(config, inbox, outbox):
    """Isolate, then answer requests until told to exit or the grader goes away."""
    held = isolate(config)
    import numpy  # noqa: F401  (loaded before the student's code, outside any call's time)
    import torch

    torch.set_num_threads(1)
    clock = time.perf_counter
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}

    def send(message):
        outbox.write(wire.dumps(message))

    main_pid = os.getpid()

    def end_strays():
        """A forked copy of this process must never answer; as process 1 of our own PID
        namespace we end every other process in it after each request."""
        if os.getpid() != main_pid:
            os._exit(0)
        if main_pid == 1:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass

    send({"op": "ready", "isolation": held})
    while True:
        try:
            message = wire.read_message(inbox)
        except Exception as error:  # a broken pipe: the grader is gone
            sys.exit(f"worker: cannot read a request: {error}")
        if message is None or message.get("op") == "exit":
            return
        if message["op"] == "load":
            errors = []
            for index, statement in enumerate(message["statements"]):
                send({"op": "progress", "index": index})
                filename = f"<student {statement['label']}>"
                try:
                    code = compile(statement["code"], filename, "exec")
                    import linecache
                    linecache.cache[filename] = (len(statement["code"]), None,
                                                 statement["code"].splitlines(True), filename)
                    exec(code, namespace)
                except BaseException as error:  # SystemExit and KeyboardInterrupt too: keep going
                    errors.append({"index": index, "error": describe_error(error)})
                end_strays()
            send({"op": "loaded", "errors": errors, "names": sorted(k for k in namespace if not k.startswith("__"))})
        elif message["op"] == "call":
            name = message["name"]
            used = set()
            reply = {"op": "result"}
            try:
                try:
                    function = resolve(namespace, name)
                except (KeyError, AttributeError):
                    raise NotDefined from None
                args = [wire.decode(a) for a in message.get("args", [])]
                probe = {k: wire.decode(v) for k, v in message["probe"].items()} if message.get("probe") else None
                kwargs = {k: wire.decode(v) for k, v in message.get("kwargs", {}).items()}
                torch.manual_seed(message.get("seed", 0))
                numpy.random.seed(message.get("seed", 0))
                patches = scenario_patches(message.get("scenario"), namespace)
                patches += banned_recorders(message.get("banned", []), used)
                originals = _tensor_copies(args, kwargs)
                with Patched(patches):
                    start = clock()
                    value = run_probe(function, args, kwargs, probe) if probe else function(*args, **kwargs)
                    reply["seconds"] = clock() - start
                reply["modified"] = _modified(originals, args, kwargs)
                reply["value"] = wire.encode(value)
                reply["ok"] = True
            except NotDefined:  # (a KeyError raised by the student's own code is reported as such)
                reply.update(ok=False, error=f"NameError: {name.split('.')[0]} is not defined in the notebook")
            except BaseException as error:  # the student's exception, SystemExit included
                reply.update(ok=False, error=describe_error(error))
            end_strays()
            reply["banned_used"] = sorted(used)
            try:
                send(reply)
            except Exception as error:  # e.g. a result too large to send
                send({"op": "result", "ok": False, "error": f"the result cannot be sent back: {error}",
                      "banned_used": sorted(used)})


def zygote():
    """Fork server: import the heavy libraries once, then fork a fresh worker per request.

    Requests come as JSON lines on stdin: {"op": "spawn", "config", "socket", "log", "env"} answers
    {"pid": ...}: the child starts a session of its own, sends its output to the log, connects to
    the grader's socket and serves it; {"op": "status", "pid"} answers the child's exit status
    (None while it runs; a negative number for a signal)."""
    import numpy  # noqa: F401
    import socket
    import torch  # noqa: F401
    try:  # every assignment's notebook imports it; about a second per worker otherwise
        import torchvision  # noqa: F401
    except ImportError:
        pass

    statuses = {}

    def reap():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            statuses[pid] = os.waitstatus_to_exitcode(status)

    for line in sys.stdin:
        request = json.loads(line)
        reap()
        if request["op"] == "status":
            deadline = time.monotonic() + (2 if request.get("wait", True) else 0)
            while request["pid"] not in statuses and time.monotonic() < deadline:
                time.sleep(0.02)
                reap()
            answer = {"status": statuses.pop(request["pid"], None)}
        else:
            child = os.fork()
            if child == 0:
                try:
                    os.setsid()
                    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(log, 1)
                    os.dup2(log, 2)
                    os.environ.clear()
                    os.environ.update(request["env"])
                    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    connection.connect(request["socket"])
                    stream = wire.SocketStream(connection)
                    serve(request["config"], stream, stream)
                finally:
                    os._exit(0)
            answer = {"pid": child}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main():
    if sys.argv[1] == "--zygote":
        zygote()
        return
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    inbox = os.fdopen(config["inbox_fd"], "rb", buffering=0)
    outbox = os.fdopen(config["outbox_fd"], "wb", buffering=0)
    serve(config, inbox, outbox)


if __name__ == "__main__":
    main()
