"""What the hidden suites share: hypothesis settings for grading, random boxes, comparisons that
fail in words without showing the hidden input, and the speed check."""
from __future__ import annotations

import math
import statistics

import torch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from autograder.checks import Finding, expect

# Grading is deterministic: examples come from a fixed derandomised stream, never from a database,
# and failures are not shrunk (the student never sees the input, so a smaller one would not help).
GRADING = settings(derandomize=True, database=None, deadline=None, max_examples=20, print_blob=False,
                   phases=(Phase.explicit, Phase.generate),
                   suppress_health_check=list(HealthCheck))


def raised(call) -> str:
    """The error of a call through a proxy that is expected to fail ("" if it returned); a
    function not implemented yet is not an expected failure: its Finding goes on."""
    try:
        call()
    except Finding as failure:
        if "not implemented yet" in str(failure):
            raise
        return str(failure)
    return ""


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
    """The last call through `proxy` left its tensor arguments as they were (the grader compares
    the arguments it sent with the worker's after the call)."""
    expect(not proxy.last_modified, f"{name} changed its input tensor(s) in place; a graded function must not "
                                    "modify its inputs (work on new tensors)")


def roughly_equal(got, want, rtol: float = 1e-3) -> bool:
    """Whether two results agree: the same structure, tensors of the same shape and dtype, equal
    integers, floats within rtol of the largest magnitude (a speed check's guard against a fast
    wrong answer, not the correctness test)."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.dtype != want.dtype:
            return False
        if not want.dtype.is_floating_point and want.dim() == 1 and got.dim() == 1:
            # kept indices (nms): a comparison exactly at the threshold may fall either way in
            # float32, so a handful of the thousands may differ
            differ = len(set(got.tolist()) ^ set(want.tolist()))
            return differ <= max(1, len(want) // 100)
        if got.shape != want.shape:
            return False
        if not want.dtype.is_floating_point:
            return bool(torch.equal(got.cpu(), want.cpu()))
        a, b = got.detach().cpu().double(), want.detach().cpu().double()
        scale = float(b.abs().max()) if b.numel() else 0.0
        return bool(torch.isclose(a, b, rtol=rtol, atol=rtol * max(scale, 1e-6), equal_nan=True).all())
    if isinstance(want, (tuple, list)):
        return isinstance(got, (tuple, list)) and len(got) == len(want) and all(
            roughly_equal(g, w, rtol) for g, w in zip(got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and set(got) == set(want) and all(roughly_equal(got[k], want[k], rtol) for k in want)
    if isinstance(want, float):
        return isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=rtol, abs_tol=rtol)
    return got == want


REFERENCE_REPEATS = 3
FAR_BEYOND = 10  # times the limit: no load on a machine explains it


def expect_fast(student, reference, name: str, inputs, factor: float, floor: float = 0.02,
                hint: str = "use tensor operations on all boxes at once, not a Python loop",
                backward: bool = False, seed: int = 0) -> None:
    """The student's function takes at most `factor` times the reference's time, and gives the
    reference's results, on large inputs.

    inputs(generator) -> the call's arguments: every run gets inputs no earlier call has seen.
    Each run is a call in a fresh fork of the notebook's loaded state (nothing an earlier call
    computed or cached is there, no other process runs), timed by the grading process's clock
    from the moment the worker's trusted code is about to call the function to the arrival of the
    result; while the reference is timed, the student's worker is stopped. One more
    run on inputs of the same kind, after a function is found fast enough, records the operators
    it dispatches (timed runs do not, so that recording costs no time), so the banned ones are seen
    at this size too; it may take three times a call's limit.
    Reference and student runs alternate (load on the machine hits both alike). The reference is
    timed REFERENCE_REPEATS times a round, and its fastest run of the round counts: its runs are
    short, so one of them can fall entirely within a burst of other work on the machine, which
    would raise the limit for a slow answer. The student's fastest run counts against the median
    of those reference times, after two rounds and at most three, or after one when it is more
    than FAR_BEYOND times the limit.
    backward: time a training step, the call and the backward pass of the sum of its result with
    respect to the first argument."""
    what = "forward and backward pass" if backward else "call"
    failure = f"{name} is too slow: its {what} did not finish in time on a large input ({{error}}); {hint}"
    probe = {"kind": "backward", "wrt": [0]} if backward else None
    base = 7919 * (seed + 1)
    reference_runs, student_runs = [], []
    for round_ in range(3):
        args = inputs(generator(base + 1 + round_))
        with student.frozen():
            timings = [reference.timed(name, *args, probe=probe) for _ in range(REFERENCE_REPEATS)]
        want = timings[0][0]
        reference_runs.append(min(seconds for _, seconds in timings))
        got, seconds = student.timed(name, *args, probe=probe, failure=failure)
        student_runs.append(seconds)
        expect(roughly_equal(got, want), f"{name} gives wrong results on a large input, so its speed is not judged; "
                                         "the other tests say what differs")
        limit = max(factor * statistics.median(reference_runs), floor)
        if min(student_runs) > FAR_BEYOND * limit or round_ >= 1 and (
                min(student_runs) <= limit or min(student_runs) > 3 * limit):
            break  # decided: within the limit, or far beyond what load could explain
    if min(student_runs) > limit:
        expect(False, f"{name} is too slow: its {what} takes {min(student_runs):.3f} s where the limit is "
                      f"{limit:.3f} s ({factor:g} times the reference on the same input); {hint}")
    # Fast enough: one more run, not timed, records the operators the function dispatches at this
    # size. Recording slows a call down (up to three times for code of many small operations), so
    # it may take three times the limit of a call.
    student.timed(name, *inputs(generator(base)), probe=probe, record=True, failure=failure, patience=3)


def expect_gradient_matches_finite_differences(student, name: str, args: tuple, wrt: int, upstream,
                                               what: str, directions: int = 6, eps: float = 1e-6,
                                               seed: int = 0) -> None:
    """The gradient the student's function gives (by autograd through its code, a custom backward
    included) agrees with central finite differences of its forward, both computed from values the
    function returned: <upstream, (f(x + eps v) - f(x - eps v)) / (2 eps)> = <grad_x, v> for random
    directions v (float64 inputs; relative tolerance 1e-4)."""
    value, grads = student.call(name, *args, probe={"kind": "backward", "wrt": [wrt], "grad_output": upstream},
                                failure=f"the gradient through {name.split('.')[0]} could not be computed ({{error}})")
    gradient = grads[0].double()
    g = generator(seed)
    x = args[wrt]
    for _ in range(directions):
        v = torch.randn(x.shape, generator=g, dtype=torch.float64).to(x.device).to(x.dtype)
        plus, minus = list(args), list(args)
        plus[wrt], minus[wrt] = x + eps * v, x - eps * v
        f_plus = student.call(name, *plus, failure=f"{name} failed ({{error}})")
        f_minus = student.call(name, *minus, failure=f"{name} failed ({{error}})")
        expect(isinstance(f_plus, torch.Tensor) and isinstance(f_minus, torch.Tensor),
               f"{name} must return a tensor")
        numeric = float(((f_plus.double() - f_minus.double()) / (2 * eps) * upstream.double().cpu()).sum())
        analytic = float((gradient.cpu() * v.double().cpu()).sum())
        expect(math.isclose(numeric, analytic, rel_tol=1e-4, abs_tol=1e-6 * max(1.0, abs(numeric))),
               f"{what}: the backward does not match finite differences of the forward (the gradient along a "
               f"random direction is {analytic:.6g} where the forward's change gives {numeric:.6g})")


def finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)
