"""The safe format in which values cross between the grader and a worker: JSON with tagged
objects, never pickle. Standalone (standard library only, torch imported lazily) because it is
copied next to the worker script.

    encode(value) -> JSON-compatible structure      decode(structure) -> value

Tensors travel as dtype, shape, device and their bytes in base64; torch.device, tuples and
non-finite floats are tagged; anything else becomes {"__object__": type, "repr": ...} and decodes
to an :class:`Opaque` that compares unequal to everything a test expects.
"""
from __future__ import annotations

import base64
import json
import math

MAX_MESSAGE_BYTES = 256 * 2**20
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool",
          "complex64", "complex128")


class Opaque:
    """A value the worker could not send as data (a module, a function, an arbitrary object)."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self):
        return f"<{self.type_name}: {self.text}>"


def encode(value, depth: int = 0):
    if depth > 64:
        raise ValueError("value nested too deeply to send")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else {"__bigint__": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: encode(v, depth + 1) for k, v in value.items()}}
        return {"__pairs__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    kind = type(value)
    module = getattr(kind, "__module__", "")
    if module.startswith("torch"):
        import torch

        if isinstance(value, torch.device):
            return {"__device__": str(value)}
        if isinstance(value, torch.dtype):
            return {"__dtype__": str(value).removeprefix("torch.")}
        if isinstance(value, torch.Tensor) and type(value) is torch.Tensor or isinstance(value, torch.nn.Parameter):
            tensor = value.detach()
            dtype = str(tensor.dtype).removeprefix("torch.")
            if dtype not in DTYPES:
                raise ValueError(f"tensors of dtype {dtype} cannot be sent")
            data = tensor.to("cpu").contiguous()
            raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
            return {"__tensor__": {"dtype": dtype, "shape": list(tensor.shape), "device": str(tensor.device),
                                   "requires_grad": bool(value.requires_grad),
                                   "data": base64.b64encode(raw).decode("ascii")}}
    if module.startswith("numpy"):
        import numpy

        if isinstance(value, numpy.generic):
            return encode(value.item(), depth + 1)
        if isinstance(value, numpy.ndarray):
            return {"__ndarray__": encode(__import__("torch").from_numpy(numpy.ascontiguousarray(value)), depth + 1)}
    return {"__object__": f"{module}.{kind.__qualname__}", "repr": _safe_repr(value)}


def _safe_repr(value) -> str:
    try:
        return repr(value)[:200]
    except Exception:  # a hostile __repr__
        return "?"


def decode(value):
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dict__" in value:
        return {k: decode(v) for k, v in value["__dict__"].items()}
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    if "__pairs__" in value:
        return {_hashable(decode(k)): decode(v) for k, v in value["__pairs__"]}
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
        return decode(value["__ndarray__"]).numpy()
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


def dumps(message) -> bytes:
    data = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes is larger than {MAX_MESSAGE_BYTES}")
    return len(data).to_bytes(8, "big") + data


def read_message(stream):
    """Read one length-prefixed JSON message from a binary stream; None at end of stream."""
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "big")
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {size} bytes is larger than {MAX_MESSAGE_BYTES}")
    data = stream.read(size)
    if len(data) < size:
        return None
    return json.loads(data)


class SocketStream:
    """A connected socket as the byte stream read_message and dumps need: read(n) returns n bytes
    (or fewer only at the end), write sends everything, fileno() serves select()."""

    def __init__(self, sock):
        self.sock = sock

    def read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
