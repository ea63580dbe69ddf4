"""The safe format in which values cross between the grader and a worker: JSON with tagged
objects, never pickle. Standard library only (torch and numpy imported
lazily), so that it can run in the worker before anything else is imported.

    encode(value) -> JSON-compatible structure      decode(structure) -> value

Tensors travel as dtype, shape, device and their bytes in base64; torch.device, tuples and
non-finite floats are tagged; anything else becomes {"__object__": type, "repr": ...} and decodes
to an :class:`Opaque` that compares unequal to everything a test expects.
"""
from __future__ import annotations

import base64
import math

DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool",
          "complex64", "complex128")


class Opaque:
    """A value the worker could not send as data (a module, a function, an arbitrary object)."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self):
        return f"<{self.type_name}: {self.text}>"


def encode(value, depth: int = 0):
    """The JSON-compatible form of a value. Built-in values (their subclasses too: torch.__version__
    is a str, a namedtuple a tuple), tensors, arrays, devices and dtypes are sent as data, read
    through the built-in types' own methods, so that encoding never runs the notebook's code (a
    dict subclass computing its items lazily, an overridden __str__), which would run after a
    timed call has ended. Anything else becomes an Opaque."""
    if depth > 64:
        raise ValueError("value nested too deeply to send")
    kind = type(value)
    if value is None or kind is bool:
        return value
    if issubclass(kind, str):
        return str.__str__(value)
    if issubclass(kind, int):
        value = int.__int__(value)
        return value if -2**63 < value < 2**63 else {"__bigint__": str(value)}
    if issubclass(kind, float):
        value = float.__float__(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if issubclass(kind, tuple) and not _is_torch(kind, "Size"):
        return {"__tuple__": [encode(v, depth + 1) for v in tuple.__iter__(value)]}
    if issubclass(kind, list):
        return [encode(v, depth + 1) for v in list.__iter__(value)]
    if issubclass(kind, dict):
        items = list(dict.items(value))
        if all(type(k) is str for k, _ in items):
            return {"__dict__": {k: encode(v, depth + 1) for k, v in items}}
        return {"__pairs__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in items]}
    module = getattr(kind, "__module__", "")
    if module.startswith("torch"):
        import torch

        if kind is torch.Size:
            return {"__tuple__": [int(n) for n in tuple.__iter__(value)]}
        if kind is torch.device:
            return {"__device__": str(value)}
        if kind is torch.dtype:
            return {"__dtype__": str(value).removeprefix("torch.")}
        if kind is torch.Tensor or kind is torch.nn.Parameter:
            tensor = value.detach()
            dtype = str(tensor.dtype).removeprefix("torch.")
            if dtype not in DTYPES:
                raise ValueError(f"tensors of dtype {dtype} cannot be sent")
            # a fresh flat copy: a gradient may be an expanded view whose one element has stride 0
            flat = torch.empty(tensor.numel(), dtype=tensor.dtype).copy_(tensor.reshape(-1).to("cpu"))
            raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
            return {"__tensor__": {"dtype": dtype, "shape": list(tensor.shape), "device": str(tensor.device),
                                   "requires_grad": bool(value.requires_grad),
                                   "data": base64.b64encode(raw).decode("ascii")}}
    if module.startswith("numpy"):
        import numpy

        if isinstance(value, numpy.generic) and kind.__module__ == "numpy":
            return encode(value.item(), depth + 1)
        if kind is numpy.ndarray:
            return {"__ndarray__": encode(__import__("torch").from_numpy(numpy.ascontiguousarray(value)), depth + 1)}
    return {"__object__": f"{module}.{getattr(kind, '__qualname__', '?')}"[:200], "repr": ""}


def _is_torch(kind, name: str) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and kind is getattr(torch, name, None)


def decode(value, depth: int = 0):
    """The value `encode` made; ValueError for anything else (a worker's answer is untrusted)."""
    if depth > 64:
        raise ValueError("value nested too deeply")
    if isinstance(value, list):
        return [decode(v, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dict__" in value:
        return {k: decode(v, depth + 1) for k, v in value["__dict__"].items()}
    if "__tuple__" in value:
        return tuple(decode(v, depth + 1) for v in value["__tuple__"])
    if "__pairs__" in value:
        return {_hashable(decode(k, depth + 1)): decode(v, depth + 1) for k, v in value["__pairs__"]}
    if "__float__" in value:
        return float(value["__float__"])
    if "__bigint__" in value:
        return int(value["__bigint__"])
    if "__device__" in value:
        import torch

        return torch.device(value["__device__"])
    if "__dtype__" in value:
        import torch

        return getattr(torch, value["__dtype__"])
    if "__tensor__" in value:
        return _tensor(value["__tensor__"])
    if "__ndarray__" in value:
        return decode(value["__ndarray__"], depth + 1).numpy()
    if "__object__" in value:
        return Opaque(str(value["__object__"]), str(value.get("repr", "")))
    raise ValueError(f"unknown tagged value with keys {sorted(value)}")


def _hashable(value):
    return value if not isinstance(value, list) else tuple(value)


def _tensor(spec):
    import torch

    dtype = spec["dtype"]
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    shape = [int(n) for n in spec["shape"]]
    raw = base64.b64decode(spec["data"])
    torch_dtype = getattr(torch, dtype)
    expected = math.prod(shape) * torch.empty((), dtype=torch_dtype).element_size()
    if len(raw) != expected:
        raise ValueError(f"tensor data has {len(raw)} bytes, its shape and dtype need {expected}")
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    tensor = flat.view(torch_dtype).reshape(shape) if raw else torch.empty(shape, dtype=torch_dtype)
    # The device a result was on is reported, not recreated: the grader compares on CPU.
    tensor.origin_device = spec.get("device", "cpu")
    return tensor


def digest(tensor) -> str:
    """A fingerprint of a tensor's dtype, shape and bytes: the grader compares the arguments it
    sent with the worker's after a call, to see a function that changed its inputs in place."""
    import hashlib

    import torch

    data = tensor.detach().to("cpu").contiguous()
    raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
    return hashlib.sha256(f"{data.dtype}|{list(data.shape)}|".encode() + raw).hexdigest()
