"""What the hidden suites share: hypothesis settings for grading, random boxes, comparisons that
fail in words without showing the hidden input, and the speed check."""
from __future__ import annotations

import math
import statistics

import torch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from autograder.checks import expect

# Grading is deterministic: examples come from a fixed derandomised stream, never from a database,
# and failures are not shrunk (the student never sees the input, so a smaller one would not help).
GRADING = settings(derandomize=True, database=None, deadline=None, max_examples=20, print_blob=False,
                   phases=(Phase.explicit, Phase.generate),
                   suppress_health_check=list(HealthCheck))


def generator(seed: int) -> torch.Generator:
    """A CPU generator with this seed: every hidden input comes from one, so grading is repeatable."""
    return torch.Generator().manual_seed(seed)


def random_boxes(generator: torch.Generator, n: int, scale: float = 100.0, dtype=torch.float64,
                 degenerate: float = 0.0, device="cpu") -> torch.Tensor:
    """float[n, 4] valid boxes (x2 >= x1, y2 >= y1) with corners in [0, 1.5 scale]; a fraction
    `degenerate` of them has zero width or height."""
    corner = torch.rand(n, 2, generator=generator, dtype=torch.float64) * scale
    size = torch.rand(n, 2, generator=generator, dtype=torch.float64) * scale / 2
    flat = torch.rand(n, generator=generator) < degenerate
    size[flat, torch.randint(0, 2, (int(flat.sum()),), generator=generator)] = 0.0
    return torch.cat([corner, corner + size], dim=1).to(dtype=dtype, device=device)


@st.composite
def box_sets(draw, max_boxes: int = 40):
    """(seed, n, m, scale, dtype, degenerate): the parameters of two random box sets."""
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, max_boxes)), draw(st.integers(0, max_boxes)),
            draw(st.sampled_from([1.0, 30.0, 1000.0])), draw(st.sampled_from([torch.float32, torch.float64])),
            draw(st.sampled_from([0.0, 0.2])))


def noncontiguous(tensor: torch.Tensor) -> torch.Tensor:
    """The same values in a tensor that is not contiguous in memory."""
    padded = torch.zeros(tensor.shape[0], tensor.shape[1] * 2, dtype=tensor.dtype, device=tensor.device)
    padded[:, ::2] = tensor
    result = padded[:, ::2]
    assert not result.is_contiguous() or tensor.numel() <= 1
    return result


def expect_tensor_like(got, want: torch.Tensor, what: str, dtype: bool = True, hint: str = "") -> None:
    """`got` is a tensor with want's shape (and dtype) on want's device; `hint` follows a wrong shape."""
    expect(isinstance(got, torch.Tensor), f"{what} must be a torch.Tensor, not {type(got).__name__}")
    expect(tuple(got.shape) == tuple(want.shape),
           f"{what} has shape {tuple(got.shape)} where {tuple(want.shape)} was expected" + (f"; {hint}" if hint else ""))
    if dtype:
        expect(got.dtype == want.dtype, f"{what} has dtype {got.dtype} where {want.dtype} was expected")
    expect(got.device.type == want.device.type, f"{what} is on {got.device.type}, not on the input's device")


def expect_close(got, want: torch.Tensor, what: str, hint: str, atol: float = 1e-6, rtol: float = 1e-5,
                 dtype: bool = True) -> None:
    """Shape, dtype, device, then values within atol + rtol |want| (nan where want is nan)."""
    expect_tensor_like(got, want, what, dtype, hint)
    a, b = got.detach().cpu().double(), want.detach().cpu().double()
    ok = torch.isclose(a, b, atol=atol, rtol=rtol, equal_nan=True)
    expect(bool(ok.all()), f"{what}: {int((~ok).sum())} of {ok.numel()} values differ from the expected ones; "
                           f"{hint}")


def expect_unchanged(proxy, name: str) -> None:
    """The last call through `proxy` left its tensor arguments as they were."""
    expect(not proxy.last_modified, f"{name} changed its input tensor(s) in place; a graded function must not "
                                    "modify its inputs (work on new tensors)")


def expect_fast(student, reference, name: str, args: tuple, factor: float, floor: float = 0.02,
                hint: str = "use tensor operations on all boxes at once, not a Python loop",
                backward: bool = False) -> None:
    """The student's function takes at most `factor` times the reference's time on `args`
    (timed inside the workers; `floor` seconds are always allowed).

    Reference and student runs alternate, so that a burst of load on the machine slows both
    sides alike (a class graded two at a time beside other work once made a correct answer
    seen at 5x the reference fail the 10x limit when the reference was timed in a quiet moment).
    The student's fastest run counts against the median reference run, after at least two
    rounds and at most three.
    backward: time a training step, the call and the backward pass of the sum of its result with
    respect to the first argument."""
    what = "forward and backward pass" if backward else "call"
    failure = f"{name} ({what}) did not finish in time on a large input ({{error}}); {hint}"
    probe = {"kind": "backward", "wrt": [0], "discard": True} if backward else None
    reference_runs, student_runs = [], []
    for round_ in range(3):
        reference.call(name, *args, probe=probe)
        reference_runs.append(reference.last_function_seconds)
        student.call(name, *args, failure=failure, probe=probe)
        student_runs.append(student.last_function_seconds)
        limit = max(factor * statistics.median(reference_runs), floor)
        if round_ >= 1 and (min(student_runs) <= limit or min(student_runs) > 3 * limit):
            break  # decided: within the limit, or far beyond what load could explain
    if min(student_runs) > limit:
        expect(False, f"{name} is too slow: its {what} takes {min(student_runs):.3f} s where the limit is "
                      f"{limit:.3f} s ({factor:g} times the reference on the same input); {hint}")


def finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)
