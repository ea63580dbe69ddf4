"""Chapter 6 (Mask R-CNN): where ROI Align samples, what ROI pooling reads, and their explorer.

Every *value* shown by this module comes from torchvision: ``torchvision.ops.roi_align`` and
``torchvision.ops.roi_pool`` for the outputs, and ``roi_align`` on zero-size boxes for the value
at one point (:func:`values_at`). What the module computes itself is geometry, so that it can be
drawn: the positions of ROI Align's sampling points (:func:`align_sampling_grid`) and the whole
cells that make up each of ROI pooling's bins (:func:`pool_bins`), both following torchvision's
rules in float32 as its kernels do. Writing ROI Align itself is assignment a06.

Coordinates. torchvision's kernels place the centre of feature cell (i, j) at the continuous
point (x, y) = (j, i) ("centre coordinates"). Figures here draw cell (i, j) as the square
[j, j + 1) x [i, i + 1) ("edge coordinates", like image pixels), so a point at centre
coordinate x is drawn at x + 0.5.
"""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.ops import roi_align, roi_pool

from .draw import PALETTE
from .roipool import quantise_box, roi_sections
from .widgets import Explorer


def example_feature_map(size: int = 8, seed: int = 6) -> Tensor:
    """float32[size, size]: whole numbers 0..9 drawn with a fixed seed, a feature map to explore."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 10, (size, size), generator=generator).to(torch.float32)


def values_at(feature_map: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """The values torchvision's ROI Align reads at points (x, y) given in centre coordinates.

    feature_map: float[H, W]; xs, ys: float[P] (any shape, flattened). Returns float[P] with the
    feature map's dtype and device. Each value is ``roi_align`` (aligned=True, one sample) of a
    zero-size box at the point, so it is torchvision's own bilinear interpolation, with its
    rules at and beyond the border of the map.
    """
    xs = torch.as_tensor(xs, dtype=feature_map.dtype, device=feature_map.device).reshape(-1)
    ys = torch.as_tensor(ys, dtype=feature_map.dtype, device=feature_map.device).reshape(-1)
    if xs.numel() == 0:
        return feature_map.new_zeros(0)
    corner_x, corner_y = xs + 0.5, ys + 0.5  # aligned=True subtracts the 0.5 again
    boxes = torch.stack([torch.zeros_like(xs), corner_x, corner_y, corner_x, corner_y], dim=1)
    out = roi_align(feature_map[None, None], boxes, output_size=1, spatial_scale=1.0, sampling_ratio=1,
                    aligned=True)
    return out.reshape(-1)


def align_region(box, spatial_scale: float = 1.0, aligned: bool = False) -> tuple[float, float, float, float]:
    """(x_start, y_start, width, height) of the region ROI Align samples, in centre coordinates.

    box: 4 numbers (x1, y1, x2, y2) in input coordinates. The corners are multiplied by
    spatial_scale; aligned=True then subtracts 0.5; without `aligned` the width and height are
    at least 1 cell. Computed in float32, like torchvision's kernel.
    """
    b = torch.as_tensor(box, dtype=torch.float32).reshape(4)
    offset = torch.tensor(0.5 if aligned else 0.0, dtype=torch.float32)
    scale = torch.tensor(spatial_scale, dtype=torch.float32)
    x1, y1, x2, y2 = (b * scale - offset).unbind()
    width, height = x2 - x1, y2 - y1
    if not aligned:
        width, height = width.clamp(min=1.0), height.clamp(min=1.0)
    return float(x1), float(y1), float(width), float(height)


def align_sampling_grid(box, output_size: int, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                        aligned: bool = False) -> tuple[Tensor, Tensor]:
    """Where ROI Align samples: (ys float32[output_size, n_h], xs float32[output_size, n_w]).

    Row p of ys holds the y coordinates (centre coordinates) of the samples in bin row p; the
    samples of bin (p, q) are all pairs (ys[p, a], xs[q, b]). n_h = n_w = sampling_ratio when it
    is > 0, otherwise ceil(region height / output_size) and ceil(region width / output_size)
    (at least 1 for drawing; torchvision then takes no sample and outputs 0). Sample a of a bin
    of size s starting at t is at t + (a + 1/2) s / n.
    """
    x1, y1, width, height = align_region(box, spatial_scale, aligned)

    def axis(start: float, length: float) -> Tensor:
        start_t, length_t = torch.tensor(start), torch.tensor(length)
        bin_size = length_t / output_size
        count = sampling_ratio if sampling_ratio > 0 else max(int(torch.ceil(bin_size)), 1)
        bins = torch.arange(output_size, dtype=torch.float32)[:, None]
        steps = torch.arange(count, dtype=torch.float32)[None, :] + 0.5
        return start_t + bins * bin_size + steps * bin_size / count

    return axis(y1, height), axis(x1, width)


def pool_bins(box, output_size: int, height: int, width: int, spatial_scale: float = 1.0) -> Tensor:
    """The cells each bin of ROI pooling takes its maximum over, by torchvision's rules.

    box: 4 numbers (x1, y1, x2, y2); the feature map is height x width cells. Returns int64
    [output_size, output_size, 4]: (col_start, row_start, col_end, row_end) of bin (p, q), ends
    excluded, clipped to the map; a bin with end <= start is empty (torchvision outputs 0).
    The rules are chapter 4's (:func:`odcourse.roipool.quantise_box`, :func:`odcourse.roipool.roi_sections`).
    """
    col0, row0, col1, row1 = quantise_box(box, spatial_scale)
    rows = torch.tensor(roi_sections(row0, row1, output_size, height))  # output_size, 2
    cols = torch.tensor(roi_sections(col0, col1, output_size, width))
    grid = torch.empty(output_size, output_size, 4, dtype=torch.int64)
    grid[..., 0], grid[..., 2] = cols[None, :, 0], cols[None, :, 1]
    grid[..., 1], grid[..., 3] = rows[:, None, 0], rows[:, None, 1]
    return grid


def _draw_feature_map(ax: Axes, feature_map: Tensor, title: str) -> None:
    """The map as light grey cells [j, j+1) x [i, i+1) with their values written in them."""
    height, width = feature_map.shape
    values = feature_map.numpy()
    low, high = float(values.min()), float(values.max())
    ax.imshow(values, cmap="Greys", vmin=low, vmax=high + 2.5 * (high - low) + 1e-6, extent=(0, width, height, 0),
              interpolation="nearest")
    for i in range(height):
        for j in range(width):
            ax.text(j + 0.5, i + 0.5, f"{values[i, j]:g}", ha="center", va="center", fontsize=8, color="#555555")
    ax.set_xticks(range(width + 1))
    ax.set_yticks(range(height + 1))
    ax.tick_params(labelsize=7)
    ax.grid(color="white", linewidth=0.8)
    ax.set_xlim(-0.4, width + 0.9)
    ax.set_ylim(height + 0.9, -0.4)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)


def _draw_output(ax: Axes, values: Tensor, title: str, color: str, low: float, high: float) -> None:
    """A small output map: its cells shaded as the feature map's, values written as texts with gid 'output'."""
    array = values.numpy()
    ax.imshow(array, cmap="Greys", vmin=low, vmax=high + 2.5 * (high - low) + 1e-6, interpolation="nearest")
    for (i, j), value in np.ndenumerate(array):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=9, color=color, gid="output")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


class RoIAlignExplorer(Explorer):
    """ROI Align and ROI pooling of one box on a small feature map, side by side.

    feature_map: float[H, W] (default :func:`example_feature_map`), spatial_scale 1: the box is
    given in cells. Controls: the box corners "x1", "y1", "x2", "y2" (swapped when given in the
    wrong order), "output_size", "sampling_ratio" (-1 = adaptive) and "aligned".

    What is drawn, for tests: on the first axes, one scatter per ROI Align bin with gid
    "align-samples-p-q" whose offsets are the sample points (edge coordinates) and whose array
    holds their interpolated values (:func:`values_at`); the sampled region as a Rectangle with
    gid "align-region". On the second axes, one Rectangle per non-empty ROI pooling bin with gid
    "pool-bin-p-q" covering its cells. The third and fourth axes show the outputs of
    ``torchvision.ops.roi_align`` and ``roi_pool``, each value a text with gid "output".
    """

    def __init__(self, feature_map: Tensor | None = None, x1: float = 1.3, y1: float = 0.7, x2: float = 5.6,
                 y2: float = 4.9, output_size: int = 2, sampling_ratio: int = 2, aligned: bool = True):
        self.feature_map = (example_feature_map() if feature_map is None else feature_map).detach().float().cpu()
        height, width = self.feature_map.shape

        def corner(name: str, value: float, limit: int) -> widgets.FloatSlider:
            return widgets.FloatSlider(value=value, min=0.0, max=float(limit), step=0.1, description=name,
                                       continuous_update=False, readout_format=".1f",
                                       layout=widgets.Layout(width="220px"))

        super().__init__({
            "x1": corner("x1", x1, width), "y1": corner("y1", y1, height),
            "x2": corner("x2", x2, width), "y2": corner("y2", y2, height),
            "output_size": widgets.Dropdown(options=[1, 2, 3, 4], value=output_size, description="output",
                                            layout=widgets.Layout(width="150px")),
            "sampling_ratio": widgets.Dropdown(options=[("-1 (adaptive)", -1), ("1", 1), ("2", 2), ("3", 3)],
                                               value=sampling_ratio, description="sampling",
                                               layout=widgets.Layout(width="200px")),
            "aligned": widgets.Checkbox(value=aligned, description="aligned", indent=False,
                                        layout=widgets.Layout(width="90px")),
        })

    def box(self, x1: float, y1: float, x2: float, y2: float) -> list[float]:
        """The box (x1, y1, x2, y2) for these slider values, corners in order."""
        return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]

    def outputs(self, box: list[float], output_size: int, sampling_ratio: int, aligned: bool) -> tuple[Tensor, Tensor]:
        """(ROI Align output, ROI pooling output), each float32[output_size, output_size], from torchvision."""
        rois = torch.tensor([[0.0, *box]])
        features = self.feature_map[None, None]
        align = roi_align(features, rois, output_size, 1.0, sampling_ratio, aligned)[0, 0]
        pool = roi_pool(features, rois, output_size, 1.0)[0, 0]
        return align, pool

    def draw(self, x1: float, y1: float, x2: float, y2: float, output_size: int, sampling_ratio: int,
             aligned: bool) -> Figure:
        box = self.box(x1, y1, x2, y2)
        align, pool = self.outputs(box, output_size, sampling_ratio, aligned)
        low, high = float(self.feature_map.min()), float(self.feature_map.max())
        figure = Figure(figsize=(10.5, 8.2), layout="constrained")
        grid = figure.add_gridspec(2, 2, height_ratios=[3.2, 1.3])
        ax_align, ax_pool = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1])
        self._draw_align(ax_align, box, output_size, sampling_ratio, aligned)
        self._draw_pool(ax_pool, box, output_size)
        _draw_output(figure.add_subplot(grid[1, 0]), align, "torchvision.ops.roi_align", "#c0392b", low, high)
        _draw_output(figure.add_subplot(grid[1, 1]), pool, "torchvision.ops.roi_pool", "#1f4e99", low, high)
        figure.suptitle(f"box ({box[0]:.1f}, {box[1]:.1f}, {box[2]:.1f}, {box[3]:.1f}) in cells, "
                        f"output {output_size} x {output_size}", fontsize=11)
        return figure

    def _draw_align(self, ax: Axes, box: list[float], output_size: int, sampling_ratio: int, aligned: bool) -> None:
        ys, xs = align_sampling_grid(box, output_size, 1.0, sampling_ratio, aligned)
        per_bin = ys.shape[1] * xs.shape[1]
        _draw_feature_map(ax, self.feature_map,
                          f"ROI Align (aligned={aligned}, sampling_ratio={sampling_ratio}): "
                          f"{per_bin} samples per bin")
        x0, y0, region_w, region_h = align_region(box, 1.0, aligned)
        ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, edgecolor="black",
                               linewidth=1.5, linestyle=":"))
        ax.add_patch(Rectangle((x0 + 0.5, y0 + 0.5), region_w, region_h, fill=False, edgecolor="#c0392b",
                               linewidth=2.2, gid="align-region"))
        for k in range(1, output_size):  # the exact bin boundaries
            ax.plot([x0 + 0.5 + k * region_w / output_size] * 2, [y0 + 0.5, y0 + 0.5 + region_h],
                    color="#c0392b", linewidth=1, linestyle="--")
            ax.plot([x0 + 0.5, x0 + 0.5 + region_w], [y0 + 0.5 + k * region_h / output_size] * 2,
                    color="#c0392b", linewidth=1, linestyle="--")
        label = (output_size * ys.shape[1]) * (output_size * xs.shape[1]) <= 20
        vmax = float(self.feature_map.max())
        for p in range(output_size):
            for q in range(output_size):
                yy, xx = torch.meshgrid(ys[p], xs[q], indexing="ij")
                values = values_at(self.feature_map, xx, yy)
                ax.scatter((xx + 0.5).reshape(-1).numpy(), (yy + 0.5).reshape(-1).numpy(), c=values.numpy(),
                           cmap="viridis", vmin=0, vmax=vmax, s=36, edgecolors="white", linewidths=0.8,
                           zorder=3, gid=f"align-samples-{p}-{q}")
                if label:
                    for x, y, v in zip(xx.reshape(-1).tolist(), yy.reshape(-1).tolist(), values.tolist()):
                        ax.text(x + 0.58, y + 0.4, f"{v:.2f}", fontsize=7, color="#c0392b", zorder=4,
                                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.75})
        if not aligned:
            ax.set_xlabel("dotted: the box; red: the region sampled (aligned=False: half a cell\n"
                          "right and down, at least 1 x 1); dots coloured by interpolated value", fontsize=8)
        else:
            ax.set_xlabel("red: the box and its bins (aligned=True); dots coloured by their\n"
                          "interpolated value, which is written next to each when there is room", fontsize=8)

    def _draw_pool(self, ax: Axes, box: list[float], output_size: int) -> None:
        height, width = self.feature_map.shape
        _draw_feature_map(ax, self.feature_map, "ROI pooling: bins of whole cells, max of each")
        ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, edgecolor="black",
                               linewidth=1.5, linestyle=":"))
        bins = pool_bins(box, output_size, height, width)
        for p in range(output_size):
            for q in range(output_size):
                c0, r0, c1, r1 = bins[p, q].tolist()
                if c1 <= c0 or r1 <= r0:
                    continue
                color = PALETTE[(p * output_size + q) % 4 + 1]
                ax.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, facecolor=color, alpha=0.22, edgecolor=color,
                                       linewidth=2.0, gid=f"pool-bin-{p}-{q}"))
                cells = self.feature_map[r0:r1, c0:c1]
                row, col = divmod(int(cells.argmax()), cells.shape[1])
                ax.add_patch(Rectangle((c0 + col + 0.08, r0 + row + 0.08), 0.84, 0.84, fill=False, edgecolor=color,
                                       linewidth=2.0))
        ax.set_xlabel("dotted: the box; coloured: the cells of each bin (corners rounded, x2 and y2\n"
                      "inside), bins may overlap; the framed cell is each bin's maximum", fontsize=8)

