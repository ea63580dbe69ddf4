"""Chapter 7 (transposed convolution and FCN): convolution as a matrix, and its explorer.

A 2-D convolution of one channel is linear in its input, so it is a matrix C: flatten the
H x W input row by row into a vector of H*W values, and C @ input.flatten() is the output,
flattened the same way. Row r of C holds the kernel's weights at the columns of the input cells
that output cell r reads; the transposed matrix C.T sends each output value back to those cells,
which is what a transposed convolution does. This module builds C (:func:`convolution_matrix`),
the output sizes of both operations, the count of kernel taps that land on each pixel of a
transposed convolution (the cause of checkerboard artefacts), FCN's bilinear initial weights
for an up-sampling layer, and :class:`ConvMatrixExplorer`. Writing the operations themselves is
assignment a07.

Convolution here means what ``torch.nn.functional.conv2d`` computes: a cross-correlation (the
kernel is not flipped) with zero padding.
"""
from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from .widgets import Explorer

SLIDES_INPUT = ((4, 5, 8, 7), (1, 8, 8, 8), (3, 6, 6, 4), (6, 5, 7, 8))
SLIDES_KERNEL = ((1, 4, 1), (1, 4, 3), (3, 3, 1))

HIGHLIGHT = "#f58231"
SELECTED = "#4363d8"


def slides_example(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """The slides' worked example: (input [4, 4], kernel [3, 3]) of whole numbers, in `dtype`.

    Their convolution (stride 1, no padding) is [[122, 148], [126, 134]].
    """
    return torch.tensor(SLIDES_INPUT, dtype=dtype), torch.tensor(SLIDES_KERNEL, dtype=dtype)


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Length of a convolution's output along one axis: floor((size + 2 padding - kernel) / stride) + 1.

    May be 0 or negative when the kernel does not fit in the padded input.
    """
    return (size + 2 * padding - kernel_size) // stride + 1


def transposed_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0,
                           output_padding: int = 0) -> int:
    """Length of a transposed convolution's output along one axis: (size - 1) stride - 2 padding + kernel + output_padding."""
    return (size - 1) * stride - 2 * padding + kernel_size + output_padding


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def convolution_matrix(kernel: Tensor, input_size, stride: int = 1, padding: int = 0) -> Tensor:
    """The matrix C of a single-channel 2-D convolution (cross-correlation, zero padding).

    kernel: float[kH, kW], any device. input_size: H, or (H, W). Returns float[Ho * Wo, H * W]
    with the kernel's dtype and device, Ho and Wo given by :func:`conv_output_size`, such that
    ``C @ x.flatten()`` equals ``conv2d(x[None, None], kernel[None, None], stride=stride,
    padding=padding).flatten()`` for any x of shape [H, W]. Kernel taps that fall on the zero
    padding have no column: padding only removes entries from C's rows.
    Raises ValueError when the kernel does not fit in the padded input.
    """
    kernel = torch.as_tensor(kernel)
    k_h, k_w = kernel.shape
    height, width = _pair(input_size)
    out_h = conv_output_size(height, k_h, stride, padding)
    out_w = conv_output_size(width, k_w, stride, padding)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {k_h} x {k_w} kernel does not fit in a {height} x {width} input padded by {padding}")
    device = kernel.device
    # Output cell (r, c) reads input cell (r * stride + a - padding, c * stride + b - padding) with weight kernel[a, b].
    r = torch.arange(out_h, device=device)[:, None, None, None]
    c = torch.arange(out_w, device=device)[None, :, None, None]
    a = torch.arange(k_h, device=device)[None, None, :, None]
    b = torch.arange(k_w, device=device)[None, None, None, :]
    rows, cols = r * stride + a - padding, c * stride + b - padding
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    shape = (out_h, out_w, k_h, k_w)
    out_index = (r * out_w + c).expand(shape)[inside]
    in_index = (rows * width + cols).expand(shape)[inside]
    matrix = kernel.new_zeros(out_h * out_w, height * width)
    matrix[out_index, in_index] = kernel.expand(shape)[inside]
    return matrix


def kernel_overlap_count(input_size: int, kernel_size: int, stride: int, padding: int = 0) -> Tensor:
    """How many kernel taps land on each output pixel of a transposed convolution.

    A transposed convolution of an input_size x input_size map adds one copy of the kernel per
    input cell into its output, the copies `stride` pixels apart. Returns int64[S, S],
    S = transposed_output_size(input_size, kernel_size, stride, padding): the number of copies
    covering each output pixel. Uneven counts are the checkerboard of Odena et al. (2016).
    """
    size = transposed_output_size(input_size, kernel_size, stride, padding)
    ones = torch.ones(kernel_size, kernel_size)
    # The transposed convolution is C.T, so the taps landing on output pixel j are the nonzeros of C's column j.
    matrix = convolution_matrix(ones, size, stride, padding)  # input_size**2 rows: the sizes match exactly
    return (matrix != 0).sum(dim=0).reshape(size, size)


def bilinear_upsampling_weight(in_channels: int, out_channels: int, kernel_size: int) -> Tensor:
    """FCN's initial weight for a transposed convolution that up-samples bilinearly.

    Returns float32[in_channels, out_channels, kernel_size, kernel_size] (the layout of
    ``nn.ConvTranspose2d.weight``): channel i is copied to channel i with the 2-D tent
    (1 - |a - centre| / f)(1 - |b - centre| / f), f = ceil(kernel_size / 2), centre = f - 1 for
    an odd kernel and f - 1/2 for an even one; every other channel pair is zero. With
    kernel_size = 2 f, stride f and padding f / 2 (f even) it up-samples by f and matches
    ``F.interpolate(mode="bilinear", align_corners=False)`` away from the border.
    """
    factor = math.ceil(kernel_size / 2)
    centre = factor - 0.5 if kernel_size % 2 == 0 else factor - 1.0  # between the two middle taps when even
    distance = (torch.arange(kernel_size, dtype=torch.float64) - centre).abs()
    tent = (1 - distance / factor).clamp(min=0)
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size, dtype=torch.float64)
    for channel in range(min(in_channels, out_channels)):
        weight[channel, channel] = tent[:, None] * tent[None, :]
    return weight.to(torch.float32)


def example_kernel(size: int) -> Tensor:
    """float64[size, size] of whole numbers 1..4 (the slides' kernel when size is 3); all nonzero."""
    if size == 3:
        return slides_example()[1]
    generator = torch.Generator().manual_seed(size)
    return torch.randint(1, 5, (size, size), generator=generator).to(torch.float64)


def example_input(size: int) -> Tensor:
    """float64[size, size] of whole numbers 0..9 (the slides' input when size is 4)."""
    if size == 4:
        return slides_example()[0]
    generator = torch.Generator().manual_seed(100 + size)
    return torch.randint(0, 10, (size, size), generator=generator).to(torch.float64)


def _draw_grid(ax: Axes, values: np.ndarray, title: str, padding: int = 0, fontsize: float = 9) -> None:
    """A map drawn as cells [j, j+1) x [i, i+1) with their values; a zero-padding ring drawn dashed."""
    height, width = values.shape
    for i in range(-padding, height + padding):
        for j in range(-padding, width + padding):
            inside = 0 <= i < height and 0 <= j < width
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor="#f4f6f7" if inside else "white", edgecolor="#aab7b8",
                                   linewidth=0.8, linestyle="-" if inside else ":"))
            text = f"{values[i, j]:g}" if inside else "0"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=fontsize,
                    color="#2c3e50" if inside else "#b0b0b0")
    ax.set_xlim(-padding - 0.2, width + padding + 0.2)
    ax.set_ylim(height + padding + 0.2, -padding - 0.2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=10)


def _draw_matrix(ax: Axes, matrix: np.ndarray, title: str) -> None:
    """A matrix as a heat map, zeros white, its values written when there is room."""
    rows, cols = matrix.shape
    shown = np.ma.masked_equal(matrix, 0)
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=max(float(np.abs(matrix).max()), 1e-9) * 1.6,
              extent=(0, cols, rows, 0), interpolation="nearest")
    if rows * cols <= 400 and max(rows, cols) <= 25:
        size = 8 if max(rows, cols) <= 16 else 6
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j + 0.5, i + 0.5, f"{value:g}", ha="center", va="center", fontsize=size,
                    color="#2c3e50" if value else "#c8c8c8")
    ax.set_xticks(np.arange(cols) + 0.5, [str(c) if cols <= 25 or c % 5 == 0 else "" for c in range(cols)],
                  fontsize=6)
    ax.set_yticks(np.arange(rows) + 0.5, [str(r) if rows <= 25 or r % 5 == 0 else "" for r in range(rows)],
                  fontsize=6)
    ax.tick_params(length=0)
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_title(title, fontsize=10)


class ConvMatrixExplorer(Explorer):
    """Which input cells one output of a convolution reads, in the grid and in its matrix C.

    Controls: "input_size" (H = W), "kernel_size", "stride", "padding", "mode"
    ("convolution" or "transposed") and the selected cell of the small map, "row" and "col":
    an output of the convolution, or, in transposed mode, an input of the transposed
    convolution (the same cell: it is row r = row * Wo + col of C and column r of C.T).
    The input is :func:`example_input`, the kernel :func:`example_kernel` (the slides' example
    at 4 x 4 and 3 x 3).

    What is drawn, for tests: three axes, left to right the map that goes in, the matrix (C, or
    C.T in transposed mode) and the map that comes out. The large H x W map holds one Rectangle
    with gid "highlight-i-j" per cell (i, j) joined to the selected cell by a nonzero kernel
    weight; the small map holds the selected cell as a Rectangle with gid "selected-i-j"; on
    the matrix, each nonzero entry of the selected row (column) is a Rectangle with gid
    "entry-m-n" at matrix row m, column n. When the kernel does not fit, a single axes holds a
    text with gid "invalid".
    """

    def __init__(self, input_size: int = 4, kernel_size: int = 3, stride: int = 1, padding: int = 0,
                 mode: str = "convolution", row: int = 0, col: int = 0):
        def slider(name: str, value: int, low: int, high: int) -> widgets.IntSlider:
            return widgets.IntSlider(value=value, min=low, max=high, description=name, continuous_update=False,
                                     layout=widgets.Layout(width="230px"))

        super().__init__({
            "input_size": slider("input H=W", input_size, 3, 7),
            "kernel_size": slider("kernel", kernel_size, 1, 4),
            "stride": slider("stride", stride, 1, 3),
            "padding": slider("padding", padding, 0, 2),
            "mode": widgets.Dropdown(options=["convolution", "transposed"], value=mode, description="mode",
                                     layout=widgets.Layout(width="210px")),
            "row": slider("cell row", 0, 0, 20),
            "col": slider("cell col", 0, 0, 20),
        })
        self._fitting = False
        self._fit_cell_range()
        self.controls["row"].value, self.controls["col"].value = row, col

    def small_size(self, input_size: int, kernel_size: int, stride: int, padding: int) -> int:
        """Ho = Wo, the size of the convolution's output (the transposed convolution's input)."""
        return conv_output_size(input_size, kernel_size, stride, padding)

    def _fit_cell_range(self) -> None:
        # The selected cell must stay inside the small map when the sizes change.
        values = self.values()
        last = max(self.small_size(values["input_size"], values["kernel_size"], values["stride"],
                                   values["padding"]) - 1, 0)
        self._fitting = True
        try:
            for name in ("row", "col"):
                self.controls[name].max = last
        finally:
            self._fitting = False

    def _changed(self, change: dict) -> None:
        if self._fitting:  # a clamped row or col while the range is fitted: one redraw follows
            return
        self._fit_cell_range()
        self.redraw()

    def connected_cells(self, input_size: int, kernel_size: int, stride: int, padding: int, row: int,
                        col: int) -> list[tuple[int, int, float]]:
        """(i, j, weight) of the input cells that output (row, col) reads, from row row * Wo + col of C."""
        matrix = convolution_matrix(example_kernel(kernel_size), input_size, stride, padding)
        small = self.small_size(input_size, kernel_size, stride, padding)
        line = matrix[row * small + col]
        return [(n // input_size, n % input_size, float(line[n])) for n in torch.nonzero(line).flatten().tolist()]

    def draw(self, input_size: int, kernel_size: int, stride: int, padding: int, mode: str, row: int,
             col: int) -> Figure:
        small = self.small_size(input_size, kernel_size, stride, padding)
        if small < 1:
            figure = Figure(figsize=(8, 1.6), layout="constrained")
            ax = figure.add_subplot()
            ax.axis("off")
            ax.text(0.5, 0.5, f"A {kernel_size} x {kernel_size} kernel does not fit in a {input_size} x {input_size} "
                    f"input padded by {padding}: no output.", ha="center", va="center", fontsize=11, gid="invalid")
            return figure
        row, col = min(row, small - 1), min(col, small - 1)
        kernel = example_kernel(kernel_size)
        image = example_input(input_size)
        matrix = convolution_matrix(kernel, input_size, stride, padding)
        output = (matrix @ image.flatten()).reshape(small, small)
        selected = row * small + col
        cells = self.connected_cells(input_size, kernel_size, stride, padding, row, col)
        transposed = mode == "transposed"

        figure = Figure(figsize=(12.5, 5.4), layout="constrained")
        n_big, n_small = input_size * input_size, small * small
        if transposed:
            ratios = [small + 0.5, max(n_small, 3) * 1.1, input_size]
        else:
            ratios = [input_size + 2 * padding, max(n_big, 4) * 0.55, small + 0.5]
        grid = figure.add_gridspec(1, 3, width_ratios=ratios)
        ax_in, ax_matrix, ax_out = (figure.add_subplot(grid[0, k]) for k in range(3))
        fontsize = 9 if input_size <= 5 else 7.5
        if transposed:
            # The small map O goes in; C.T spreads O[row, col] over the cells the convolution read it from.
            spread = (matrix.T @ output.flatten()).reshape(input_size, input_size)
            _draw_grid(ax_in, output.numpy(), f"O: {small} x {small} (goes in)", fontsize=fontsize)
            big_ax, small_ax = ax_out, ax_in
            _draw_matrix(ax_matrix, matrix.T.numpy(), f"C.T: {n_big} x {n_small}")
            ax_matrix.add_patch(Rectangle((selected, 0), 1, n_big, fill=False, edgecolor=SELECTED, linewidth=2.2))
            for i, j, _ in cells:
                ax_matrix.add_patch(Rectangle((selected, i * input_size + j), 1, 1, fill=False, edgecolor=HIGHLIGHT,
                                              linewidth=2.2, gid=f"entry-{i * input_size + j}-{selected}"))
            # No padding ring here: on this side padding means cropping `padding` cells off each border.
            _draw_grid(ax_out, spread.numpy(), f"C.T O: {input_size} x {input_size} (comes out)", fontsize=fontsize)
            note = (f"O[{row}, {col}] = {output[row, col]:g} is added, times the kernel weight, into each orange "
                    f"cell: column {selected} of C.T")
            extra = conv_output_size(input_size, kernel_size, stride, padding)
            leftover = (input_size + 2 * padding - kernel_size) % stride
            formula = (f"conv_transpose2d: ({extra} - 1) x {stride} - 2 x {padding} + {kernel_size}"
                       f" + output_padding {leftover} = {input_size}")
        else:
            _draw_grid(ax_in, image.numpy(), f"I: {input_size} x {input_size} (goes in)", padding, fontsize=fontsize)
            big_ax, small_ax = ax_in, ax_out
            _draw_matrix(ax_matrix, matrix.numpy(), f"C: {n_small} x {n_big}")
            ax_matrix.add_patch(Rectangle((0, selected), n_big, 1, fill=False, edgecolor=SELECTED, linewidth=2.2))
            for i, j, _ in cells:
                ax_matrix.add_patch(Rectangle((i * input_size + j, selected), 1, 1, fill=False, edgecolor=HIGHLIGHT,
                                              linewidth=2.2, gid=f"entry-{selected}-{i * input_size + j}"))
            _draw_grid(ax_out, output.numpy(), f"O = C I: {small} x {small} (comes out)", fontsize=fontsize)
            top, left = row * stride - padding, col * stride - padding
            ax_in.add_patch(Rectangle((left, top), kernel_size, kernel_size, fill=False, edgecolor=SELECTED,
                                      linewidth=2, linestyle="--", gid="window"))
            note = (f"O[{row}, {col}] = {output[row, col]:g} is the sum of the orange cells times the kernel "
                    f"weights: row {selected} of C")
            formula = (f"size: floor(({input_size} + 2 x {padding} - {kernel_size}) / {stride}) + 1 = {small}")
        for i, j, weight in cells:
            big_ax.add_patch(Rectangle((j, i), 1, 1, facecolor=HIGHLIGHT, alpha=0.45, edgecolor=HIGHLIGHT,
                                       linewidth=1.5, gid=f"highlight-{i}-{j}"))
            big_ax.text(j + 0.95, i + 0.92, f"x{weight:g}", ha="right", va="bottom", fontsize=6.5, color="#7e3a00")
        small_ax.add_patch(Rectangle((col, row), 1, 1, facecolor=SELECTED, alpha=0.35, edgecolor=SELECTED,
                                     linewidth=2, gid=f"selected-{row}-{col}"))
        ax_in.set_xlabel(formula if not transposed else "", fontsize=8)
        ax_out.set_xlabel(formula if transposed else "", fontsize=8)
        ax_matrix.set_xlabel(note, fontsize=8)
        kind = "transposed convolution" if transposed else "convolution"
        figure.suptitle(f"{kind}: {input_size} x {input_size} input, {kernel_size} x {kernel_size} kernel, "
                        f"stride {stride}, padding {padding}", fontsize=11)
        return figure
