"""Trusted code around one call of a student's function, for what the hidden suites cannot do in
the grading process (where no student code may run): gradients through the function, a module
built by the student's class, a function under many seeds, a detector trained and evaluated.

Every probe returns values (tensors, numbers), never a verdict: the grading process compares
them with the reference's, with finite differences of value-only calls, or with what it sent.
The student's code is always called through `call_student`, so that the recorder never takes
the probe's own work (torch.autograd.grad, an optimizer step) for the student's.
"""
from __future__ import annotations


def call_student(function, *args, **kwargs):
    return function(*args, **kwargs)


def run(function, args, kwargs, probe):
    kind = probe["kind"]
    if kind == "module":
        return module(function, args, kwargs, probe)
    if kind == "seeded":
        return seeded(function, args, kwargs, probe)
    if kind == "detector":
        return detector(function, args, kwargs, probe)
    if kind == "requires_grad":
        return requires_grad(function, args, kwargs, probe)
    if kind == "backward":
        return backward(function, args, kwargs, probe)
    raise ValueError(f"unknown probe {kind!r}")


def _with_grad(args, wrt):
    args = list(args)
    for i in wrt:
        args[i] = args[i].detach().clone().requires_grad_(True)
    return args


def requires_grad(function, args, kwargs, probe):
    """For each tensor of the result, whether a gradient would flow back from it to args[wrt]."""
    import torch

    args = _with_grad(args, [int(i) for i in probe["wrt"]])
    with torch.enable_grad():
        value = call_student(function, *args, **kwargs)
    outputs = list(value) if isinstance(value, (tuple, list)) else [value]
    return [bool(v.requires_grad) if isinstance(v, torch.Tensor) else None for v in outputs]


def backward(function, args, kwargs, probe):
    """(value, gradients): the gradients of sum(value * grad_output) (of sum(value) without
    "grad_output") with respect to args[i] for i in probe["wrt"]; a tuple of tensors takes a tuple
    of grad_outputs, one each, and a dict of tensors (a12's losses) a dict with the same keys, or none."""
    import torch

    wrt = [int(i) for i in probe["wrt"]]
    args = _with_grad(args, wrt)
    with torch.enable_grad():
        value = call_student(function, *args, **kwargs)
    grad_outputs = probe.get("grad_output")
    if isinstance(value, dict):  # a dict of losses: its values in the order of the probe's keys (or its own)
        keys = list(grad_outputs) if isinstance(grad_outputs, dict) else list(dict.keys(value))
        if sorted(map(str, dict.keys(value))) != sorted(map(str, keys)):
            raise TypeError(f"the result must be a dict with the keys {sorted(map(str, keys))}")
        grad_outputs = [grad_outputs[k] for k in keys] if isinstance(grad_outputs, dict) else None
        value = {k: dict.__getitem__(value, k) for k in keys}
    outputs = list(dict.values(value)) if isinstance(value, dict) else (
        list(value) if isinstance(value, (tuple, list)) else [value])
    if grad_outputs is None:
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
    detached = tuple(v.detach() for v in outputs)
    if isinstance(value, dict):
        return dict(zip(value, detached)), grads
    return (detached if isinstance(value, (tuple, list)) else detached[0]), grads


def module(cls, args, kwargs, probe):
    """Build `cls(*args, **kwargs)` (a torch.nn.Module): {"state": its state dict as built}, and with
    probe["inputs"] (the forward's one argument) {"outputs": the forward's result} after loading
    probe["state_dict"] when given; with probe["backward"] {"gradients": of the sum of all outputs
    with respect to each parameter, by name}."""
    import torch

    built = call_student(cls, *args, **kwargs)
    if not isinstance(built, torch.nn.Module):
        raise TypeError(f"{getattr(cls, '__name__', cls)}(...) made a {type(built).__name__}, not a torch.nn.Module")
    report = {"state": {k: v.detach().clone() for k, v in built.state_dict().items()}}
    if probe.get("inputs") is None:
        return report
    if probe.get("state_dict") is not None:
        built.load_state_dict(probe["state_dict"])
    inputs = probe["inputs"]
    device = next((t.device for t in tensors(inputs)), torch.device("cpu"))
    built.to(device)
    with torch.enable_grad():
        outputs = call_student(built, inputs)
    report["outputs"] = outputs
    if probe.get("backward"):
        flat = [t for t in tensors(outputs) if t.requires_grad]
        if not flat:
            raise TypeError("the module's outputs do not depend on its parameters through operations autograd can follow")
        named = [(k, p) for k, p in built.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(sum(t.sum() for t in flat), [p for _, p in named], allow_unused=True)
        report["gradients"] = {k: (torch.zeros_like(p) if g is None else g.detach()) for (k, p), g in zip(named, grads)}
    return report


def seeded(function, args, kwargs, probe):
    """The function's results under each of probe["seeds"]: a torch.Generator seeded with it passed
    as `generator=` (probe["generator"] true; on the first tensor argument's device), or the global
    generator seeded with torch.manual_seed. Tuples of same-shaped tensors come back stacked."""
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
        return results


def detector(build, args, kwargs, probe):
    """Build a detector with `build(*args, **kwargs)` and use it as torchvision's detection models
    are used: probe["seed"] seeds torch before building; probe["train"] = {"images", "targets",
    "steps", "lr"} trains it with Adam on the sum of its losses, one batch; probe["eval"] = images
    runs it in evaluation mode. Reported: "keys", "scalar", "finite", "requires_grad" (of the first
    call's losses, per key), "parameters" and "parameters_with_gradient" (after the first backward
    pass), "losses" (float[steps, keys]), "outputs" (the detections) and "inputs" (the images and
    targets as they are afterwards, for the grader to compare with what it sent)."""
    import torch

    torch.manual_seed(int(probe.get("seed", 0)))
    model = call_student(build, *args, **kwargs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"build_detector(...) returned a {type(model).__name__}, not a torch.nn.Module")
    given = [probe.get("train") or {}, {"eval": probe.get("eval")}]
    device = next((t.device for t in tensors(given)), torch.device("cpu"))
    model.to(device)
    report = {}
    if probe.get("train"):
        report.update(_train(model, probe["train"]))
    if probe.get("eval") is not None:
        model.eval()
        with torch.no_grad():
            report["outputs"] = call_student(model, probe["eval"])
    report["inputs"] = [t.detach() for t in tensors(given)]
    return report


def _train(model, train):
    import torch

    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=float(train["lr"]))
    report, history = {}, []
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
    return report


def tensors(value):
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)
