"""Visible checks for assignment a07-transposed-conv: ``from odcourse.checks import transconv as check``.

PyTorch's own convolutions are the yardstick (the graded functions must equal them); the slides'
worked example is checked number for number.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Report
from .tensors import call_keeping_inputs, close, expect_tensor

# The slides' worked example ("Convolution as Matrix Operation (1/6)").
SLIDE_INPUT = torch.tensor([[4.0, 5, 8, 7], [1, 8, 8, 8], [3, 6, 6, 4], [6, 5, 7, 8]])
SLIDE_KERNEL = torch.tensor([[1.0, 4, 1], [1, 4, 3], [3, 3, 1]])
SLIDE_OUTPUT = torch.tensor([[122.0, 148], [126, 134]])


def _matrix_by_autograd(kernel, size, stride, padding):
    """float[Ho*Wo, H*W]: row r holds d output[r] / d input, read off conv2d by autograd."""
    x = torch.zeros(1, 1, *size, dtype=kernel.dtype, requires_grad=True)
    out = F.conv2d(x, kernel[None, None], stride=stride, padding=padding).reshape(-1)
    rows = [torch.autograd.grad(out[r], x, retain_graph=True)[0].reshape(-1) for r in range(out.numel())]
    return torch.stack(rows)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _row_cells(row: torch.Tensor, width: int) -> list[tuple[int, int]]:
    return [(int(i) // width, int(i) % width) for i in row.nonzero().reshape(-1)]


def conv_matrix(fn) -> None:
    """Check ``conv_matrix`` on the slides' example and against conv2d's own input gradient."""
    with Report("conv_matrix") as report:
        matrix = call_keeping_inputs(report, fn, SLIDE_KERNEL, 4)
        if expect_tensor(report, matrix, "the slides' 4 x 16 matrix", shape=(4, 16), dtype=torch.float32):
            want = _matrix_by_autograd(SLIDE_KERNEL, (4, 4), 1, 0)
            if report.expect(close(matrix, want), "the slides' matrix: row r holds the kernel at the cells output r "
                                                  "reads (row 0: cells (0,0)..(2,2) of the input), 0 elsewhere"):
                output = (matrix @ SLIDE_INPUT.reshape(16)).reshape(2, 2)
                report.expect(close(output, SLIDE_OUTPUT), f"C @ I gives {output.tolist()} instead of "
                                                           f"{SLIDE_OUTPUT.tolist()}")
        kernel = torch.arange(1.0, 7.0, dtype=torch.float64).reshape(2, 3)
        for what, size, stride, padding in (("a 2 x 3 kernel on a 4 x 5 input", (4, 5), 1, 0),
                                            ("stride 2", (5, 6), 2, 0), ("padding 1", (3, 4), 1, 1),
                                            ("stride (2, 1) and padding (1, 0)", (5, 4), (2, 1), (1, 0))):
            got = report.call(fn, kernel, size, stride, padding)
            want = _matrix_by_autograd(kernel, size, stride, padding)
            if not expect_tensor(report, got, what, shape=tuple(want.shape), dtype=torch.float64):
                continue
            wrong = [r for r in range(want.shape[0]) if not close(got[r], want[r])]
            out_w = (size[1] + 2 * _pair(padding)[1] - kernel.shape[1]) // _pair(stride)[1] + 1
            r = wrong[0] if wrong else 0
            cells, got_cells = _row_cells(want[r], size[1]), _row_cells(got[r], size[1])
            if cells != got_cells:
                problem = (f"row {r} (output cell {divmod(r, out_w)}) should have nonzeros at input cells {cells} but "
                           f"has them at {got_cells} (with stride s and padding p, output (i, j) reads input "
                           "(i s - p + a, j s - p + b); padding cells are left out)")
            else:
                problem = (f"row {r} has its nonzeros at the right cells but not the right values: kernel[a, b] "
                           "multiplies input (i s - p + a, j s - p + b), not flipped (PyTorch's conv2d does not "
                           "flip the kernel)")
            report.expect(not wrong, f"{what}: {problem}")
        leaf = SLIDE_KERNEL.clone().requires_grad_(True)
        out = report.call(fn, leaf, (4, 4))
        report.expect(isinstance(out, torch.Tensor) and out.requires_grad,
                      "the matrix must be differentiable with respect to the kernel (build it from kernel's values "
                      "with out-of-place operations such as index_put, not from kernel.tolist())")


def conv2d_im2col(fn) -> None:
    """Check ``conv2d_im2col`` against torch.nn.functional.conv2d."""
    with Report("conv2d_im2col") as report:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 7, 9, generator=g)
        weight = torch.randn(4, 3, 3, 2, generator=g)
        bias = torch.randn(4, generator=g)
        for what, b, stride, padding in (("no bias, stride 1, padding 0", None, 1, 0), ("with bias", bias, 1, 0),
                                         ("stride 2, padding 1", bias, 2, 1),
                                         ("stride (1, 3), padding (2, 0)", None, (1, 3), (2, 0))):
            got = call_keeping_inputs(report, fn, x, weight, b, stride, padding)
            want = F.conv2d(x, weight, b, stride, padding)
            if expect_tensor(report, got, what, shape=tuple(want.shape), dtype=torch.float32):
                report.expect(close(got, want, atol=1e-4), f"{what}: values differ from conv2d's (flatten the "
                              "weights and the columns in the same (channel, row, column) order; pad both sides)")
        leaf = x.double().requires_grad_(True)
        out = report.call(fn, leaf, weight.double(), bias.double(), 1, 1)
        report.expect(isinstance(out, torch.Tensor) and out.requires_grad,
                      "the result must be differentiable with respect to x")


def conv_transpose2d(fn) -> None:
    """Check ``conv_transpose2d`` on the slides' example and against torch.nn.functional.conv_transpose2d."""
    with Report("conv_transpose2d") as report:
        small = SLIDE_OUTPUT[None, None]
        got = call_keeping_inputs(report, fn, small, SLIDE_KERNEL[None, None])
        want = F.conv_transpose2d(small, SLIDE_KERNEL[None, None])
        if expect_tensor(report, got, "the slides' 2 x 2 output taken back to 4 x 4", shape=(1, 1, 4, 4),
                         dtype=torch.float32):
            report.expect(close(got, want), "C^T @ O: each of the 4 values times the kernel, added into a 4 x 4 map "
                                            "at its own position")
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, 4, 5, generator=g)
        weight = torch.randn(3, 2, 3, 4, generator=g)  # [in_channels, out_channels, kH, kW]
        bias = torch.randn(2, generator=g)
        for what, b, stride, padding, extra in (("stride 1", None, 1, 0, 0), ("stride 2 with bias", bias, 2, 0, 0),
                                                ("stride 2, padding 1", bias, 2, 1, 0),
                                                ("stride (3, 2), padding (1, 0), output_padding (2, 1)", None, (3, 2),
                                                 (1, 0), (2, 1))):
            got = call_keeping_inputs(report, fn, x, weight, b, stride, padding, extra)
            want = F.conv_transpose2d(x, weight, b, stride, padding, extra)
            if expect_tensor(report, got, what, shape=tuple(want.shape), dtype=torch.float32):
                report.expect(close(got, want, atol=1e-4), f"{what}: values differ from conv_transpose2d's (weight is "
                              "[in_channels, out_channels, kH, kW]; padding removes rows and columns from both sides "
                              "of the full output; output_padding adds them at the bottom and right)")
        leaf = x.double().requires_grad_(True)
        weight_leaf = weight.double().requires_grad_(True)
        out = report.call(fn, leaf, weight_leaf, None, 2, 1, 1)
        if report.expect(isinstance(out, torch.Tensor) and out.requires_grad,
                         "the result must be differentiable with respect to x and weight"):
            upstream = torch.randn(out.shape, generator=g, dtype=torch.float64)
            grads = torch.autograd.grad(out, (leaf, weight_leaf), upstream, allow_unused=True)
            a, b = leaf.detach().requires_grad_(True), weight_leaf.detach().requires_grad_(True)
            want = torch.autograd.grad(F.conv_transpose2d(a, b, None, 2, 1, 1), (a, b), upstream)
            report.expect(all(g is not None and close(g, w, atol=1e-8) for g, w in zip(grads, want)),
                          "the gradients with respect to x and weight differ from conv_transpose2d's")


def bilinear_kernel(fn) -> None:
    """Check ``bilinear_kernel``: FCN's weights, on the diagonal channels, up-sampling like F.interpolate."""
    with Report("bilinear_kernel") as report:
        weight = call_keeping_inputs(report, fn, 2, 2, 4)
        want = torch.tensor([0.25, 0.75, 0.75, 0.25])
        want = want[:, None] * want[None, :]
        if expect_tensor(report, weight, "bilinear_kernel(2, 2, 4)", shape=(2, 2, 4, 4), dtype=torch.float32):
            report.expect(close(weight[0, 0], want) and close(weight[1, 1], want),
                          f"a 4 x 4 kernel (factor 2, centre 1.5) has rows and columns weighted "
                          f"[0.25, 0.75, 0.75, 0.25]; got the first row {weight[0, 0, 0].tolist()}")
            report.expect(not weight[0, 1].any() and not weight[1, 0].any(),
                          "channel i is up-sampled into channel i only: weight[i, j] is 0 for i != j")
        odd = report.call(fn, 1, 1, 3)
        if expect_tensor(report, odd, "bilinear_kernel(1, 1, 3)", shape=(1, 1, 3, 3)):
            profile = torch.tensor([0.5, 1.0, 0.5])
            report.expect(close(odd[0, 0], profile[:, None] * profile[None, :]),
                          "an odd kernel (size 3: factor 2, centre 1) has the profile [0.5, 1, 0.5]")
        uneven = report.call(fn, 3, 2, 4)
        expect_tensor(report, uneven, "bilinear_kernel(3, 2, 4)", shape=(3, 2, 4, 4))
        image = torch.rand(1, 2, 6, 7, generator=torch.Generator().manual_seed(2))
        if isinstance(weight, torch.Tensor) and weight.shape == (2, 2, 4, 4):
            up = F.conv_transpose2d(image, weight.float(), stride=2, padding=1)
            smooth = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False)
            report.expect(close(up[..., 1:-1, 1:-1], smooth[..., 1:-1, 1:-1]),
                          "with stride 2 and padding 1 the kernel must up-sample like bilinear interpolation "
                          "(F.interpolate, align_corners=False) away from the border")
