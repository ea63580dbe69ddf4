"""Chapter 4 (SPP-net and Fast R-CNN): the ROI pooling explorer and the drawing helpers of its page.

ROI pooling itself is always ``torchvision.ops.roi_pool`` here; writing it (and its backward
pass) is assignment a04. What this module computes is only what a figure needs to *draw*:

- :func:`quantise_box`, :func:`roi_sections`: which feature cells torchvision's ``roi_pool``
  looks at for a box, and where its sections (bins) lie, so they can be outlined;
- :func:`adaptive_sections`: the bins of PyTorch's adaptive pooling (the SPP layer's bins);
- :func:`pooling_switches`: the cell each pooled value was copied from, read back from
  torchvision's own backward pass (the "argmax switches");
- :func:`example_feature_map`, :func:`draw_value_grid`, :func:`draw_cells`: a small feature map
  drawn as a grid of numbers, and rectangles over ranges of its cells;
- :class:`RoIPoolExplorer`: move a box over a feature map and watch ROI pooling.

Drawing convention (matplotlib's ``imshow``): feature cell (row i, column j) is the unit square
centred at (j, i). This is also torchvision's: a box corner x lands on cell round(x * scale).
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
from torchvision.ops import roi_pool

from .draw import PALETTE
from .widgets import Explorer

#: The spatial scales the explorer offers, by label: 1 / the backbone's stride.
SCALES = {"1": 1.0, "1/2": 0.5, "1/4": 0.25, "1/8": 0.125, "1/16": 0.0625}


def example_feature_map(size: int = 8, seed: int = 0) -> Tensor:
    """float32[size, size]: one channel of a made-up feature map, the chapter's worked example.

    The values are distinct hundredths in [0, 1) (so no two cells tie for a maximum), fixed by
    `seed`. size must be at most 10 (there are only 100 hundredths).
    """
    if not 1 <= size <= 10:
        raise ValueError(f"size must be between 1 and 10, not {size}")
    generator = torch.Generator().manual_seed(seed)
    hundredths = torch.randperm(100, generator=generator)[: size * size]
    return (hundredths.to(torch.float32) / 100).reshape(size, size)


def round_half_away(value: float) -> int:
    """C's ``round``, which torchvision's kernels use: halves go away from zero (2.5 -> 3, -2.5 -> -3)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def quantise_box(box, spatial_scale: float) -> tuple[int, int, int, int]:
    """The cells torchvision's ``roi_pool`` pools for one box (its first step, quantisation).

    box: 4 numbers (x1, y1, x2, y2) in image pixels; spatial_scale: float (1 / stride).
    Each corner is multiplied by spatial_scale in float32 (as the kernel does for float32
    features) and rounded half away from zero. Returns (first column, first row, last column,
    last row): the last ones are *inclusive*, so the region is max(last - first + 1, 1) cells
    wide and high. The cells may lie partly or wholly outside the feature map.
    """
    scale = np.float32(spatial_scale)
    x1, y1, x2, y2 = (round_half_away(float(np.float32(v) * scale)) for v in box)
    return x1, y1, x2, y2


def roi_sections(first: int, last: int, sections: int, limit: int) -> list[tuple[int, int]]:
    """Along one side of a quantised region, the cells each of its sections covers, as torchvision.

    first, last: the region's first and last cell (inclusive, from :func:`quantise_box`);
    sections: the output size along this side; limit: the feature map's size along it.
    With a = max(last - first + 1, 1), section i covers cells
    [floor(i a / sections), ceil((i + 1) a / sections)) (in float32 arithmetic), shifted by
    `first` and clipped to [0, limit]. Returns a list of `sections` pairs (begin, end),
    end exclusive; a section with end <= begin is empty (roi_pool outputs 0 there).
    Neighbouring sections overlap by one cell when a / sections is not a whole number.
    """
    length = np.float32(max(last - first + 1, 1))
    size = length / np.float32(sections)
    found = []
    for i in range(sections):
        begin = int(math.floor(np.float32(i) * size)) + first
        end = int(math.ceil(np.float32(i + 1) * size)) + first
        found.append((min(max(begin, 0), limit), min(max(end, 0), limit)))
    return found


def adaptive_sections(length: int, sections: int) -> list[tuple[int, int]]:
    """The bins of PyTorch's adaptive pooling (``adaptive_max_pool2d``) along one side.

    length a (cells, >= 1) cut into n = `sections` bins; bin i covers [floor(i a / n),
    ceil((i + 1) a / n)). Returns n pairs (begin, end), end exclusive. Every cell is in some bin;
    bins overlap when n does not divide a, and repeat cells when n > a.
    """
    return [(i * length // sections, -(-(i + 1) * length // sections)) for i in range(sections)]


def pooling_switches(feature: Tensor, box, output_size: int, spatial_scale: float) -> Tensor:
    """Where each output of ``torchvision.ops.roi_pool`` for one box was copied from.

    feature: float[H, W] (one channel); box: 4 numbers (x1, y1, x2, y2) in image pixels.
    Returns int64[output_size, output_size, 2]: the (row, column) of the feature cell that output
    (i, j) copies — its argmax "switch" — or (-1, -1) where the section is empty (output 0).
    Found by back-propagating a one-hot gradient from each output through torchvision's own
    backward pass: the switch is the one cell that receives it. Runs on the CPU.
    """
    x = feature.detach().cpu().to(torch.float32)[None, None].requires_grad_(True)
    rois = torch.tensor([[0.0, *[float(v) for v in box]]], dtype=torch.float32)
    pooled = roi_pool(x, rois, output_size, spatial_scale)[0, 0]
    switches = torch.full((output_size, output_size, 2), -1, dtype=torch.int64)
    for i in range(output_size):
        for j in range(output_size):
            (gradient,) = torch.autograd.grad(pooled[i, j], x, retain_graph=True)
            hit = gradient[0, 0].nonzero()
            if len(hit):
                switches[i, j] = hit[0]
    return switches


def draw_value_grid(ax: Axes, values, fmt: str = "{:.2f}", cmap: str = "Greys", fontsize: float = 9,
                    vmin: float | None = None, vmax: float | None = None) -> Axes:
    """Draw a matrix float[H, W] as coloured cells with their numbers written in them.

    Cell (i, j) is the unit square centred at (j, i); ticks name the rows and columns. Values
    from vmin to vmax (default: the matrix's own range) are coloured with the lighter part of
    `cmap` only, so that the numbers stay readable. Text objects carry gid "value-i-j" so that
    tests can read what was written.
    """
    array = torch.as_tensor(values).detach().cpu().to(torch.float64).numpy()
    low = float(array.min()) if vmin is None else vmin
    high = float(array.max()) if vmax is None else vmax
    ax.imshow(array, cmap=cmap, vmin=low, vmax=high + (high - low) * 0.6 + 1e-12, interpolation="nearest")
    for (i, j), value in np.ndenumerate(array):
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=fontsize, gid=f"value-{i}-{j}")
    ax.set_xticks(range(array.shape[1]))
    ax.set_yticks(range(array.shape[0]))
    ax.tick_params(length=0, labelsize=8)
    return ax


def draw_cells(ax: Axes, rows: tuple[int, int], columns: tuple[int, int], inset: float = 0.0,
               **style) -> Rectangle:
    """A rectangle over cells rows [begin, end) x columns [begin, end) of a grid drawn by
    :func:`draw_value_grid`, shrunk by `inset` on every side; `style` goes to ``Rectangle``."""
    (top, bottom), (left, right) = rows, columns
    patch = Rectangle((left - 0.5 + inset, top - 0.5 + inset), right - left - 2 * inset,
                      bottom - top - 2 * inset, **style)
    ax.add_patch(patch)
    return patch


def section_colour(i: int, j: int, output_size: int) -> str:
    """The colour of output section (i, j), the same on the feature map and on the output."""
    return PALETTE[(i * output_size + j) % len(PALETTE)]


class RoIPoolExplorer(Explorer):
    """Move a box over a one-channel feature map and watch ``torchvision.ops.roi_pool``.

    feature: float[H, W] (default: :func:`example_feature_map`). Controls: the box corners x1,
    y1, x2, y2 in image pixels (fractions allowed), the output size (sections per side) and the
    spatial scale (1 / stride). Left, the feature map as a grid of numbers with the box as given
    times the scale (dashed, gid "box"), the quantised region of whole cells (gid "quantised"),
    one outline per non-empty section (gid "section-i-j") and, filled in the section's colour,
    the cell each output was copied from (gid "max-i-j", from :func:`pooling_switches`).
    Right, the pooled output of ``roi_pool`` (texts with gid "value-i-j").
    """

    def __init__(self, feature: Tensor | None = None, x1: float = 2.0, y1: float = 26.0, x2: float = 51.0,
                 y2: float = 58.0, output_size: int = 2, spatial_scale: float = 0.125):
        self.feature = (example_feature_map() if feature is None else feature).detach().cpu().to(torch.float32)
        height, width = self.feature.shape
        scales = dict(SCALES)
        if spatial_scale not in scales.values():
            scales[f"{spatial_scale:g}"] = spatial_scale
        largest = math.ceil(max(height, width) / spatial_scale)  # the map's extent in image pixels

        def corner(name: str, value: float) -> widgets.FloatSlider:
            return widgets.FloatSlider(value=value, min=0.0, max=max(largest, value), step=0.5, description=name,
                                       continuous_update=False, readout_format=".1f")

        super().__init__({
            "x1": corner("x1", x1), "y1": corner("y1", y1), "x2": corner("x2", x2), "y2": corner("y2", y2),
            "output_size": widgets.IntSlider(value=output_size, min=1, max=7, description="output size",
                                             continuous_update=False),
            "spatial_scale": widgets.Dropdown(options=list(scales.items()), value=spatial_scale,
                                              description="scale"),
        })

    def pooled(self, x1: float, y1: float, x2: float, y2: float, output_size: int, spatial_scale: float) -> Tensor:
        """float32[output_size, output_size]: ``torchvision.ops.roi_pool`` of the box."""
        rois = torch.tensor([[0.0, x1, y1, x2, y2]], dtype=torch.float32)
        return roi_pool(self.feature[None, None], rois, output_size, spatial_scale)[0, 0]

    def draw(self, x1: float, y1: float, x2: float, y2: float, output_size: int, spatial_scale: float) -> Figure:
        box = (x1, y1, x2, y2)
        height, width = self.feature.shape
        pooled = self.pooled(*box, output_size, spatial_scale)
        switches = pooling_switches(self.feature, box, output_size, spatial_scale)
        first_x, first_y, last_x, last_y = quantise_box(box, spatial_scale)
        rows = roi_sections(first_y, last_y, output_size, height)
        columns = roi_sections(first_x, last_x, output_size, width)

        figure = Figure(figsize=(10.5, 5.6), layout="constrained")
        left, right = figure.subplots(1, 2, width_ratios=[2, 1])
        draw_value_grid(left, self.feature, fontsize=9)
        scaled = [float(np.float32(v) * np.float32(spatial_scale)) for v in box]
        quantised = ((first_y, first_y + max(last_y - first_y + 1, 1)), (first_x, first_x + max(last_x - first_x + 1, 1)))
        draw_cells(left, *quantised, fill=False, edgecolor="black", linewidth=3.0, gid="quantised")
        left.add_patch(Rectangle((scaled[0], scaled[1]), scaled[2] - scaled[0], scaled[3] - scaled[1], fill=False,
                                 edgecolor="#4363d8", linestyle="--", linewidth=2.0, gid="box"))
        empty = 0
        for i, (top, bottom) in enumerate(rows):
            for j, (start, stop) in enumerate(columns):
                colour = section_colour(i, j, output_size)
                if bottom <= top or stop <= start:
                    empty += 1
                    continue
                draw_cells(left, (top, bottom), (start, stop), inset=0.1, fill=False, edgecolor=colour,
                           linewidth=2.0, gid=f"section-{i}-{j}")
                row, column = switches[i, j].tolist()
                if row >= 0:
                    draw_cells(left, (row, row + 1), (column, column + 1), inset=0.16, facecolor=colour,
                               edgecolor="none", alpha=0.45, gid=f"max-{i}-{j}")
        left.set_xlim(min(-0.5, scaled[0], quantised[1][0] - 0.5) - 0.3,
                      max(width - 0.5, scaled[2], quantised[1][1] - 0.5) + 0.3)
        left.set_ylim(max(height - 0.5, scaled[3], quantised[0][1] - 0.5) + 0.3,
                      min(-0.5, scaled[1], quantised[0][0] - 0.5) - 0.3)
        left.set_title(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) px x {spatial_scale:g} = "
                       f"({scaled[0]:.2f}, {scaled[1]:.2f}, {scaled[2]:.2f}, {scaled[3]:.2f}) cells\n"
                       f"quantised: columns {first_x}..{last_x}, rows {first_y}..{last_y}"
                       + (f"; {empty} empty section{'s' * (empty > 1)}" if empty else ""), fontsize=10)

        draw_value_grid(right, pooled, fontsize=11, cmap="Greys", vmin=float(self.feature.min()),
                        vmax=float(self.feature.max()))
        for i in range(output_size):
            for j in range(output_size):
                draw_cells(right, (i, i + 1), (j, j + 1), inset=0.06, fill=False, linewidth=3.0,
                           edgecolor=section_colour(i, j, output_size), gid=f"output-{i}-{j}")
        right.set_title(f"roi_pool output, {output_size} x {output_size}", fontsize=10)
        return figure
