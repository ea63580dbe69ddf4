"""Findings about tensors that every assignment's visible checks share: shape, dtype, device,
inputs left unchanged, and pictures of boxes."""
from __future__ import annotations

from typing import Any, Callable

import torch

from . import Report


def expect_tensor(report: Report, value: Any, what: str, shape: tuple | None = None,
                  dtype: torch.dtype | None = None, device: torch.device | None = None) -> bool:
    """Check that `value` is a tensor of this shape, dtype and device; one finding per mismatch.
    Returns True when everything matched (so that value comparisons can follow)."""
    if not report.expect(isinstance(value, torch.Tensor),
                         f"{what} must be a torch.Tensor, not {type(value).__name__}"):
        return False
    ok = True
    if shape is not None:
        ok &= report.expect(tuple(value.shape) == tuple(shape),
                            f"{what} has shape {tuple(value.shape)} but must have shape {tuple(shape)}")
    if dtype is not None:
        ok &= report.expect(value.dtype == dtype, f"{what} has dtype {value.dtype} but must be {dtype}")
    if device is not None:
        ok &= report.expect(value.device.type == torch.device(device).type,
                            f"{what} is on {value.device} but must stay on the input's device {device}")
    return bool(ok)


def call_keeping_inputs(report: Report, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call fn and add a finding if it changed any of its tensor arguments in place."""
    copies = [a.clone() if isinstance(a, torch.Tensor) else None for a in args]
    value = report.call(fn, *args, **kwargs)
    changed = [i for i, (a, c) in enumerate(zip(args, copies)) if c is not None and not torch.equal(a, c)]
    report.expect(not changed, f"the call changed its argument(s) {changed} in place: work on new tensors "
                               "(e.g. x = x.clone(), or out-of-place operations) instead")
    return value


def note_if_accepted(report: Report, fn: Callable, args: tuple, nonsense: str, torchvision_raises: bool = True) -> None:
    """Call fn on arguments that make no sense (`nonsense` says what is wrong with them). If it
    returns instead of raising an error, add a note, not a failure: no grade depends on validating
    inputs, but an early, clear error saves a search later (and torchvision's op refuses these
    arguments when `torchvision_raises`)."""
    try:
        fn(*args)
    except Exception:  # any error refuses the nonsense, which is all the note asks
        return
    where = " where torchvision raises one" if torchvision_raises else ""
    report.note(f"given {nonsense}, your function returned a result instead of raising an error{where}. Not "
                "graded, but checking the shapes first (and raising a ValueError that says what is wrong) turns a "
                "silent wrong answer into a clear message")


def close(got: torch.Tensor, want: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    """Same shape and values within tolerance (nan equals nan), compared in float64 on the CPU."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        return False
    return bool(torch.allclose(got.detach().cpu().double(), want.detach().cpu().double(), atol=atol, rtol=rtol,
                               equal_nan=True))


def boxes_picture(groups: dict[str, tuple[Any, str]], title: str, size: tuple[int, int] | None = None):
    """A drawing function (for Report.illustrate): each group name -> (boxes[N, 4], colour)."""
    def draw():
        import matplotlib.pyplot as plt

        from ..draw import draw_boxes

        figure, ax = plt.subplots(figsize=(4.5, 4.5))
        everything = [torch.as_tensor(b, dtype=torch.float64).reshape(-1, 4) for b, _ in groups.values()]
        stacked = torch.cat(everything) if everything else torch.zeros(0, 4)
        for name, (boxes, colour) in groups.items():
            draw_boxes(boxes, ax, color=colour, labels=[name] + [""] * (len(boxes) - 1))
        if size is not None:
            ax.set_xlim(0, size[1])
            ax.set_ylim(size[0], 0)
        elif len(stacked):
            low, high = stacked[:, :2].min().item() - 1, stacked[:, 2:].max().item() + 1
            ax.set_xlim(low, high)
            ax.set_ylim(high, low)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        return figure
    return draw
