"""Chapter 5 (Faster R-CNN): the anchor explorer and the helpers that run, train and draw the page's RPN.

Everything the region proposal network *computes* on the page comes from torchvision:
``AnchorGenerator`` (the anchors), ``RPNHead`` (objectness logits and box deltas), ``Matcher`` and
``BalancedPositiveNegativeSampler`` (anchor labels and mini-batches) and ``RegionProposalNetwork``
(its losses and proposals). Writing those is assignment a05. This module only

- :class:`AnchorExplorer`: choose a feature-map cell, the anchor sizes and aspect ratios and the
  stride, and see the cell's k anchors, as torchvision makes them, on an image;
- :func:`draw_feature_grid`: the feature-map cells drawn over an image;
- :func:`tiny_backbone`: the page's small ConvNet (stride 8), for 128 x 128 images on a CPU;
- :func:`image_list`: a batch of equal-sized images as torchvision's ``ImageList``;
- :func:`propose`: what a ``RegionProposalNetwork`` proposes for a batch of images, with the
  proposals' scores and the head's objectness maps;
- :func:`train_rpn`: the training loop of the page's miniature RPN;
- :func:`draw_feature_pyramid`: the feature pyramid network (FPN) with one anchor size per level.

Coordinates are image pixels with pixel edges at whole numbers, as in :mod:`odcourse.draw`.
"""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.patheffects import withStroke
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers

from .data import make_scene
from .draw import show_image
from .widgets import Explorer

#: The anchor sizes (sqrt of the area, pixels) the explorer offers; the paper's are 128, 256, 512.
SIZES = (32, 64, 128, 256, 512)
#: The aspect ratios (height / width, torchvision's convention) the explorer offers, by label.
ASPECT_RATIOS = {"1:2 (h/w 0.5)": 0.5, "1:1 (h/w 1)": 1.0, "2:1 (h/w 2)": 2.0}
#: A colour per anchor size and a line style per aspect ratio, the same in every figure.
SIZE_COLOURS = dict(zip(SIZES, ["#42d4f4", "#bfef45", "#e6194b", "#ffe119", "#f032e6"]))
RATIO_STYLES = {0.5: "--", 1.0: "-", 2.0: ":"}
#: A dark edge around coloured lines, so that they show on any background.
OUTLINE = [withStroke(linewidth=4, foreground="#222222")]
#: The strides the explorer offers (those that divide the image size are kept).
STRIDES = (8, 16, 32, 64)


def draw_feature_grid(ax: Axes, height: int, width: int, stride: int, **style) -> LineCollection:
    """Draw the cells of a feature map of stride `stride` over a height x width image.

    Cell (row i, column j) covers pixels [j s, (j + 1) s) x [i s, (i + 1) s) with s = stride.
    The lines are one LineCollection with gid "grid"; `style` goes to it (colour, width...).
    """
    xs = np.arange(0, width + 1, stride)
    ys = np.arange(0, height + 1, stride)
    segments = [[(x, 0), (x, height)] for x in xs] + [[(0, y), (width, y)] for y in ys]
    lines = LineCollection(segments, **{"colors": "white", "linewidths": 0.5, "alpha": 0.6, **style})
    lines.set_gid("grid")
    ax.add_collection(lines)
    return lines


class AnchorExplorer(Explorer):
    """The k anchors of one feature-map cell, as ``torchvision``'s ``AnchorGenerator`` makes them.

    image: float[3, H, W] in [0, 1] (default: one of the course's synthetic scenes, 800 x 800).
    Controls: "row" and "column" of the cell, "sizes" and "aspect_ratios" (multiple choices; the
    anchors are made for every pair, k = len(sizes) x len(aspect_ratios)) and "stride" (the
    feature map is H // stride x W // stride cells). What is drawn, for tests: on the first axes
    the image, the grid (gid "grid"), the chosen cell (a Rectangle with gid "cell"), the point the
    anchors are centred on (gid "centre") and one Rectangle per anchor with gid "anchor-i", i its
    place among the cell's anchors in torchvision's order. The second axes hold the caption, one
    text with gid "caption": k and every anchor's corners.
    """

    def __init__(self, image: Tensor | None = None, row: int = 16, column: int = 20,
                 sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), stride: int = 16):
        self.image = (make_scene(seed=5, index=10, size=800)[0] if image is None else image).detach().cpu().float()
        height, width = self.image.shape[-2:]
        strides = [s for s in STRIDES if height % s == 0 and width % s == 0]
        if stride not in strides:
            raise ValueError(f"stride must divide the image size {height} x {width}: one of {strides}, not {stride}")
        self.updating = False  # True while the row and column ranges follow a new stride
        layout = widgets.Layout(width="230px")
        super().__init__({
            "row": widgets.IntSlider(value=row, min=0, max=height // stride - 1, description="row",
                                     continuous_update=False, layout=layout),
            "column": widgets.IntSlider(value=column, min=0, max=width // stride - 1, description="column",
                                        continuous_update=False, layout=layout),
            "sizes": widgets.SelectMultiple(options=[(str(s), s) for s in SIZES], value=tuple(sizes),
                                            rows=len(SIZES), description="sizes", layout=widgets.Layout(width="170px")),
            "aspect_ratios": widgets.SelectMultiple(options=list(ASPECT_RATIOS.items()), value=tuple(aspect_ratios),
                                                    rows=len(ASPECT_RATIOS), description="h : w",
                                                    layout=widgets.Layout(width="220px")),
            "stride": widgets.Dropdown(options=strides, value=stride, description="stride",
                                       layout=widgets.Layout(width="150px")),
        })

    def _changed(self, change: dict) -> None:
        if self.updating:
            return
        if change["owner"] is self.controls["stride"]:
            # A new stride changes the number of cells: keep row and column inside the new grid
            # (clamping them would otherwise redraw once per slider).
            self.updating = True
            try:
                height, width = self.image.shape[-2:]
                self.controls["row"].max = height // change["new"] - 1
                self.controls["column"].max = width // change["new"] - 1
            finally:
                self.updating = False
        super()._changed(change)

    def cell_anchors(self, row: int, column: int, sizes, aspect_ratios, stride: int) -> Tensor:
        """float32[k, 4]: the anchors (x1, y1, x2, y2) of cell (row, column), from AnchorGenerator.

        sizes and aspect_ratios in ascending order; k = len(sizes) * len(aspect_ratios), in
        torchvision's order (aspect ratio by aspect ratio, and the sizes within each).
        """
        height, width = self.image.shape[-2:]
        cells = (height // stride, width // stride)
        generator = AnchorGenerator((tuple(sizes),), (tuple(aspect_ratios),))
        feature_map = torch.zeros(1, 1, *cells)  # only its size matters
        anchors = generator(ImageList(self.image[None], [(height, width)]), [feature_map])[0]
        k = len(sizes) * len(aspect_ratios)
        first = (row * cells[1] + column) * k  # locations row by row, k anchors each
        return anchors[first:first + k]

    def draw(self, row: int, column: int, sizes, aspect_ratios, stride: int) -> Figure:
        sizes, aspect_ratios = sorted(sizes), sorted(aspect_ratios)
        height, width = self.image.shape[-2:]
        figure = Figure(figsize=(11, 6.4), layout="constrained")
        ax, text_ax = figure.subplots(1, 2, width_ratios=[1.5, 1])
        show_image(self.image, ax)
        draw_feature_grid(ax, height, width, stride)
        ax.add_patch(Rectangle((column * stride, row * stride), stride, stride, facecolor="yellow", alpha=0.8,
                               edgecolor="black", linewidth=1, gid="cell"))
        centre = (column * stride, row * stride)  # torchvision: cell index x stride, the cell's top-left corner
        ax.plot(*centre, marker="o", color="black", markersize=5, markerfacecolor="white", gid="centre")
        anchors = self.cell_anchors(row, column, sizes, aspect_ratios, stride) if sizes and aspect_ratios \
            else torch.zeros(0, 4)
        pairs = [(size, ratio) for ratio in aspect_ratios for size in sizes]  # torchvision's order
        for i, ((x1, y1, x2, y2), (size, ratio)) in enumerate(zip(anchors.tolist(), pairs)):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=SIZE_COLOURS[size],
                                   linestyle=RATIO_STYLES[ratio], linewidth=2, gid=f"anchor-{i}",
                                   path_effects=OUTLINE))
        ax.add_patch(Rectangle((0, 0), width, height, fill=False, edgecolor="black", linewidth=1))
        low = anchors[:, :2].min(dim=0).values.tolist() if len(anchors) else [0.0, 0.0]
        high = anchors[:, 2:].max(dim=0).values.tolist() if len(anchors) else [width, height]
        margin = 0.03 * max(height, width)
        ax.set_xlim(min(low[0], 0) - margin, max(high[0], width) + margin)
        ax.set_ylim(max(high[1], height) + margin, min(low[1], 0) - margin)
        ax.set_title(f"{height // stride} x {width // stride} feature map (stride {stride}): "
                     f"cell row {row}, column {column}", fontsize=10)
        handles = [Line2D([], [], color=SIZE_COLOURS[s], linewidth=2.5, label=f"size {s}", path_effects=OUTLINE)
                   for s in sizes]
        handles += [Line2D([], [], color="black", linestyle=RATIO_STYLES[r], linewidth=1.5,
                           label=f"h/w {r:g}") for r in aspect_ratios]
        text_ax.axis("off")
        text_ax.text(0.0, 0.98, self.caption(row, column, stride, sizes, aspect_ratios, anchors, pairs),
                     family="monospace", fontsize=9, va="top", ha="left", transform=text_ax.transAxes, gid="caption")
        if handles:
            text_ax.legend(handles=handles, loc="lower left", fontsize=9, title="colour: size; line: ratio",
                           title_fontsize=9, frameon=False)
        return figure

    def caption(self, row: int, column: int, stride: int, sizes, aspect_ratios, anchors: Tensor, pairs) -> str:
        """The explorer's text: k, the centre and every anchor's corners (and whether it leaves the image)."""
        if not len(anchors):
            return "k = 0: choose at least one size and one aspect ratio."
        height, width = self.image.shape[-2:]
        outside = (anchors[:, 0] < 0) | (anchors[:, 1] < 0) | (anchors[:, 2] > width) | (anchors[:, 3] > height)
        lines = [f"k = {len(sizes)} sizes x {len(aspect_ratios)} ratios = {len(anchors)} anchors",
                 f"centred at (x, y) = ({column * stride}, {row * stride}),",
                 "the cell's top-left corner", "",
                 "  i  size   h/w      x1      y1      x2      y2"]
        for i, ((x1, y1, x2, y2), (size, ratio)) in enumerate(zip(anchors.tolist(), pairs)):
            lines.append(f"{i:3d} {size:5d} {ratio:5.1f} {x1:7.0f} {y1:7.0f} {x2:7.0f} {y2:7.0f}"
                         + (" *" if outside[i] else ""))
        lines += ["", f"* crosses the image border: {int(outside.sum())} of {len(anchors)}"]
        return "\n".join(lines)


def tiny_backbone(seed: int = 0) -> nn.Sequential:
    """The page's ConvNet: float[N, 3, H, W] -> float[N, 64, H / 8, W / 8] (stride 8).

    Four 3 x 3 convolutions with batch normalisation and ReLU (16, 32, 64, 64 channels), the first
    of stride 2, and two 2 x 2 max poolings: chapter 4's backbone. Initialised from `seed`
    without touching the global random state.
    """
    def conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    with torch.random.fork_rng(devices=[]):  # the CPU generator only; it is restored on exit
        torch.manual_seed(seed)
        return nn.Sequential(*conv(3, 16, stride=2), *conv(16, 32), nn.MaxPool2d(2),
                             *conv(32, 64), nn.MaxPool2d(2), *conv(64, 64))


def image_list(images: Tensor) -> ImageList:
    """torchvision's ImageList for a batch float[N, 3, H, W] of images of one size (no padding)."""
    return ImageList(images, [tuple(images.shape[-2:])] * len(images))


@torch.no_grad()
def propose(backbone: nn.Module, rpn: RegionProposalNetwork, images: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """What `rpn` proposes for images float[N, 3, H, W], both modules in evaluation mode.

    The steps of ``RegionProposalNetwork.forward`` at test time, with torchvision's own methods,
    keeping what forward drops. Returns (boxes, scores, objectness): for each image its proposals
    float[P_i, 4] (best first) and their scores float[P_i] (the sigmoid of the objectness logit),
    and the head's objectness logits float[N, A, H', W'] (A anchors per location) of the first
    (here: the only) feature map.
    """
    backbone.eval()
    rpn.eval()
    features = [backbone(images)]
    objectness, deltas = rpn.head(features)
    anchors = rpn.anchor_generator(image_list(images), features)
    per_level = [o[0].numel() for o in objectness]  # A x H' x W' anchors on each level
    flat_objectness, flat_deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(flat_deltas, anchors).view(len(images), -1, 4)
    boxes, scores = rpn.filter_proposals(proposals, flat_objectness, [tuple(images.shape[-2:])] * len(images),
                                         per_level)
    return boxes, scores, objectness[0]


def train_rpn(backbone: nn.Module, rpn: RegionProposalNetwork, data: list, steps: int, batch_size: int = 4,
              lr: float = 1e-2, seed: int = 0) -> np.ndarray:
    """Train backbone and RPN together with Adam (one-cycle schedule) on `data`; return the losses.

    data: a list of (image float[3, H, W], target dict with "boxes" float[M, 4]), all images of
    one size. Each step takes `batch_size` images drawn at random and minimises the sum of
    torchvision's two RPN losses. `seed` fixes the batches and the anchor sampling. Returns
    float64[steps, 2]: (objectness loss, box regression loss) of each step. Leaves both modules
    in training mode.
    """
    parameters = list(backbone.parameters()) + list(rpn.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # BalancedPositiveNegativeSampler draws from the global generator
    backbone.train()
    rpn.train()
    history = []
    for _ in range(steps):
        chosen = torch.randint(len(data), (batch_size,), generator=generator).tolist()
        images = torch.stack([data[i][0] for i in chosen])
        targets = [{"boxes": data[i][1]["boxes"]} for i in chosen]
        _, losses = rpn(image_list(images), {"0": backbone(images)}, targets)
        optimizer.zero_grad()
        (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
        optimizer.step()
        schedule.step()
        history.append((losses["loss_objectness"].item(), losses["loss_rpn_box_reg"].item()))
    return np.array(history, dtype=np.float64).reshape(-1, 2)


def draw_feature_pyramid(ax: Axes, anchor_sizes=(32, 64, 128, 256, 512)) -> None:
    """The feature pyramid network (FPN) of Lin et al. (2017), with the anchor size of each level.

    Left, the backbone's bottom-up pathway C2..C5 (strides 4 to 32); middle, the top-down pathway
    P5..P2, each level the 2x up-sampled level above plus a 1 x 1 lateral convolution of C_l,
    then a 3 x 3 convolution; P6 is P5 max-pooled with stride 2. Right, the one RPN head shared
    by all levels: level P_l has anchors of one size, `anchor_sizes[l - 2]`, and 3 aspect ratios.
    """
    sides = [2.4, 1.7, 1.2, 0.85, 0.6]  # drawn sizes of levels 2..6 (halving, but readable)
    ys = [0.0, 2.7, 4.9, 6.7, 8.2]
    bottom_up, top_down, head = 0.0, 6.0, 9.0
    arrow = dict(arrowstyle="-|>", mutation_scale=12)
    for level, (side, y) in enumerate(zip(sides, ys), start=2):
        if level <= 5:  # the backbone has no C6
            ax.add_patch(Rectangle((bottom_up - side / 2, y - side / 2), side, side, facecolor="#fdebd0",
                                   edgecolor="#34495e"))
            ax.text(bottom_up - side / 2 - 0.2, y, f"C{level}\nstride {2 ** level}", ha="right", va="center", fontsize=9)
            ax.add_patch(FancyArrowPatch((bottom_up + side / 2 + 0.1, y), (top_down - side / 2 - 0.1, y),
                                         color="#34495e", **arrow))
            ax.text((bottom_up + top_down) / 2, y + 0.1, "1 x 1 conv", ha="center", va="bottom", fontsize=8,
                    color="#555555")
        ax.add_patch(Rectangle((top_down - side / 2, y - side / 2), side, side, facecolor="#dbe9f6", edgecolor="#34495e"))
        ax.text(top_down, y, f"P{level}", ha="center", va="center", fontsize=10, fontweight="bold")
        ax.add_patch(FancyArrowPatch((top_down + side / 2 + 0.1, y), (head - 0.1, y), color="#c0392b", **arrow))
        ax.text(head, y, f"RPN head: {anchor_sizes[level - 2]}$^2$ anchors\nx 3 ratios (k = 3)", ha="left",
                va="center", fontsize=9)
    for lower, upper in zip(range(4), range(1, 5)):
        if upper <= 3:  # bottom-up: C2 -> C3 -> C4 -> C5
            ax.add_patch(FancyArrowPatch((bottom_up, ys[lower] + sides[lower] / 2 + 0.05),
                                         (bottom_up, ys[upper] - sides[upper] / 2 - 0.05), color="#34495e", **arrow))
            # top-down: P5 -> P4 -> P3 -> P2, 2x nearest-neighbour up-sampling
            ax.add_patch(FancyArrowPatch((top_down, ys[upper] - sides[upper] / 2 - 0.05),
                                         (top_down, ys[lower] + sides[lower] / 2 + 0.05), color="#138d75", **arrow))
            ax.text(top_down + 0.15, (ys[lower] + sides[lower] / 2 + ys[upper] - sides[upper] / 2) / 2, "2x up",
                    ha="left", va="center", fontsize=8, color="#138d75")
    ax.add_patch(FancyArrowPatch((top_down, ys[3] + sides[3] / 2 + 0.05), (top_down, ys[4] - sides[4] / 2 - 0.05),
                                 color="#7f8c8d", **arrow))
    ax.text(top_down + 0.15, (ys[3] + sides[3] / 2 + ys[4] - sides[4] / 2) / 2, "max pool", ha="left", va="center",
            fontsize=8, color="#7f8c8d")
    for x, text, colour in [(bottom_up, "bottom-up\n(backbone)", "black"), (top_down, "top-down\n+ lateral", "black"),
                            (head + 1.3, "one head,\nshared weights", "#c0392b")]:
        ax.text(x, 9.4, text, ha="center", va="bottom", fontsize=10, color=colour)
    ax.set_xlim(-2.6, 12.6)
    ax.set_ylim(-1.4, 10.5)
    ax.set_aspect("equal")
    ax.axis("off")
