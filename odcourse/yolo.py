"""Chapter 8 (YOLO): grid targets, the four-term loss, decoding, NMS step by step, soft-NMS, explorers.

The page's YOLO follows one set of conventions (assignment a08 uses the same):

- a grid of S x S cells covers the image; boxes are in **image fractions**: (x1, y1, x2, y2)
  divided by the image's width and height, in [0, 1];
- C object classes numbered 0..C-1 (the synthetic data's labels minus 1);
- a cell's box is (x, y, w, h): the centre's offset inside the cell, in [0, 1), and the width and
  height as fractions of the image. Cell (row i, column j) and (x, y, w, h) stand for the box with
  centre ((j + x) / S, (i + y) / S) and size (w, h);
- the target of an image is float[S, S, 5 + C] and a prediction float[N, S, S, B * 5 + C]: B boxes
  (x, y, w, h, confidence) per cell, then C class probabilities (every output after a sigmoid).

What this module offers:

- :func:`boxes_to_fractions`, :func:`responsible_cells`, :func:`yolo_target`, :func:`image_target`:
  from a data set's boxes to YOLO's targets;
- :func:`cell_boxes_to_corners`, :func:`paired_box_iou`, :func:`responsible_predictors`,
  :func:`yolo_loss_terms`: the YOLOv1 loss, term by term;
- :func:`decode_predictions`: score threshold, corners, class-wise NMS (torchvision's);
- :func:`nms_steps`, :func:`nms_state`, :func:`soft_nms`: greedy NMS one decision at a time, and
  the soft-NMS of Bodla et al. (2017);
- :func:`example_detections`: the post-processing example (a scene and scored detections);
- :func:`draw_grid`, :func:`draw_nms_state`: the grid, and boxes coloured by their NMS decision;
- :class:`YoloGridExplorer` and :class:`NmsExplorer`: the page's two explorers.

The page uses these to show and train; the graded functions of assignment a08 must not use
them (no graded function may use the helper package).
"""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.patheffects import withStroke
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from .data import CLASSES, SyntheticShapes, make_scene
from .draw import PALETTE, show_image
from .widgets import Explorer

#: The names of the C = 3 YOLO classes of the synthetic data (label - 1 indexes this tuple).
YOLO_CLASSES = CLASSES[1:]
#: Colours of NMS decisions, the same in every figure.
KEPT, SUPPRESSED, CANDIDATE, IGNORED = "#3cb44b", "#9e9e9e", "#f58231", "#cfcfcf"
#: A dark edge around coloured lines, so that they show on any background.
OUTLINE = [withStroke(linewidth=3.5, foreground="#222222")]
#: The names of the four loss terms, in the slides' order.
LOSS_TERMS = ("coordinate", "object", "no_object", "class")


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------

def boxes_to_fractions(boxes: Tensor, width: float, height: float) -> Tensor:
    """Boxes float[G, 4] (x1, y1, x2, y2) in pixels -> the same boxes in image fractions, in [0, 1]."""
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    return boxes / scale


def responsible_cells(boxes: Tensor, S: int) -> Tensor:
    """The cell that holds each box's centre: int64[G, 2] as (row i, column j).

    boxes: float[G, 4] (x1, y1, x2, y2) in image fractions. With the centre (cx, cy),
    i = min(floor(cy S), S - 1) and j = min(floor(cx S), S - 1): a centre on the image's right or
    bottom edge belongs to the last cell.
    """
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    cells = torch.floor(centres * S).long().clamp(0, S - 1)  # (column, row)
    return cells.flip(-1)


def yolo_target(boxes: Tensor, labels: Tensor, S: int, C: int) -> Tensor:
    """The YOLO target of one image: float[S, S, 5 + C] with the dtype and device of `boxes`.

    boxes: float[G, 4] (x1, y1, x2, y2) in image fractions; labels: int64[G] in 0..C-1. The cell
    (i, j) of :func:`responsible_cells` holds (x, y, w, h, 1, one-hot class) with x = cx S - j,
    y = cy S - i, w = x2 - x1, h = y2 - y1; every other cell is zeros. When several centres fall
    in one cell, the first object (in the order of `boxes`) is kept.
    """
    target = boxes.new_zeros(S, S, 5 + C)
    if len(boxes) == 0:
        return target
    cells = responsible_cells(boxes, S)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    offsets = centres * S - cells.flip(-1).to(boxes.dtype)  # (x, y) inside the cell
    sizes = boxes[:, 2:] - boxes[:, :2]
    # Walk the objects backwards so that the first object of a shared cell is written last.
    for g in reversed(range(len(boxes))):
        i, j = cells[g].tolist()
        target[i, j] = 0
        target[i, j, 0:2] = offsets[g]
        target[i, j, 2:4] = sizes[g]
        target[i, j, 4] = 1
        target[i, j, 5 + int(labels[g])] = 1
    return target


def image_target(target: dict, image_size: int, S: int, C: int = 3) -> Tensor:
    """float32[S, S, 5 + C]: :func:`yolo_target` of a :class:`odcourse.data.SyntheticShapes` item.

    target: the item's dict ("boxes" in pixels of a square image of side `image_size`, "labels"
    in 1..C); the labels are shifted to 0..C-1 here.
    """
    boxes = boxes_to_fractions(target["boxes"].float(), image_size, image_size)
    return yolo_target(boxes, target["labels"] - 1, S, C)


# ---------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------

def cell_boxes_to_corners(cell_boxes: Tensor) -> Tensor:
    """Cell-relative boxes -> corners (x1, y1, x2, y2) in image fractions, same shape and dtype.

    cell_boxes: float[..., S, S, K, 4] as (x, y, w, h): K boxes in every cell of an S x S grid
    (dimensions -4 and -3 are the rows and columns). The centre of box k of cell (i, j) is
    ((j + x) / S, (i + y) / S). Corners are not clipped.
    """
    S = cell_boxes.shape[-3]
    steps = torch.arange(S, dtype=cell_boxes.dtype, device=cell_boxes.device)
    cx = (steps[None, :, None] + cell_boxes[..., 0]) / S  # column index j along dimension -2
    cy = (steps[:, None, None] + cell_boxes[..., 1]) / S  # row index i along dimension -3
    half_w, half_h = cell_boxes[..., 2] / 2, cell_boxes[..., 3] / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def paired_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes a[..., 4] and b[..., 4] (x1, y1, x2, y2), pair by pair (broadcast): float[...].

    Unlike torchvision.ops.box_iou (every box of a with every box of b), this compares the boxes
    at the same position. Degenerate pairs (union 0) get IoU 0.
    """
    low = torch.maximum(a[..., :2], b[..., :2])
    high = torch.minimum(a[..., 2:], b[..., 2:])
    intersection = (high - low).clamp(min=0).prod(dim=-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(dim=-1)
    union = area_a + area_b - intersection
    return torch.where(union > 0, intersection / union.clamp(min=torch.finfo(union.dtype).tiny),
                       torch.zeros_like(union))


def split_prediction(pred: Tensor, B: int) -> tuple[Tensor, Tensor]:
    """pred float[..., S, S, B * 5 + C] -> (boxes float[..., S, S, B, 5], class probabilities float[..., S, S, C])."""
    return pred[..., :B * 5].unflatten(-1, (B, 5)), pred[..., B * 5:]


@torch.no_grad()
def responsible_predictors(pred: Tensor, target: Tensor, B: int = 2) -> Tensor:
    """For every cell, the box predictor with the largest IoU with the cell's target box: int64[N, S, S].

    pred: float[N, S, S, B * 5 + C]; target: float[N, S, S, 5 + C]. IoUs are computed in image
    fractions (:func:`cell_boxes_to_corners`); ties go to the lowest box index. Only cells that hold
    an object (target confidence 1) use the answer. No gradient: the choice is a constant of the loss.
    """
    boxes, _ = split_prediction(pred, B)
    predicted = cell_boxes_to_corners(boxes[..., :4])
    truth = cell_boxes_to_corners(target[..., None, :4])
    return paired_box_iou(predicted, truth).argmax(dim=-1)  # argmax returns the first maximum


def yolo_loss_terms(pred: Tensor, target: Tensor, B: int = 2, lambda_coord: float = 5.0,
                    lambda_noobj: float = 0.5) -> dict[str, Tensor]:
    """YOLOv1's four loss terms, weighted and divided by the batch size N: a dict of scalar tensors.

    pred: float[N, S, S, B * 5 + C] in (0, 1) (after a sigmoid; w, h > 0); target: float[N, S, S,
    5 + C] of :func:`yolo_target`. Keys, in the slides' order (their sum is the loss):

    - "coordinate": lambda_coord x sum over object cells of the responsible box of
      (x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2;
    - "object": sum over object cells of (c^ - 1)^2 for the responsible box;
    - "no_object": lambda_noobj x sum of c^2 over every box that is not responsible (all B boxes of
      an empty cell, the other B - 1 boxes of an object cell);
    - "class": sum over object cells of the squared errors of the C class probabilities.

    The responsible box is :func:`responsible_predictors`' choice.
    """
    N = pred.shape[0]
    boxes, probabilities = split_prediction(pred, B)
    has_object = target[..., 4] > 0  # bool[N, S, S]
    chosen = responsible_predictors(pred, target, B)
    responsible = torch.nn.functional.one_hot(chosen, B).bool() & has_object[..., None]  # bool[N, S, S, B]
    truth = target[..., None, :4]
    # sqrt of the predicted sizes only where they count: elsewhere a zero would give an infinite gradient.
    size_error = (torch.sqrt(torch.where(responsible[..., None], boxes[..., 2:4], torch.ones_like(boxes[..., 2:4])))
                  - torch.sqrt(truth[..., 2:4]))
    coordinate = ((boxes[..., :2] - truth[..., :2]) ** 2).sum(-1) + (size_error ** 2).sum(-1)
    confidence = boxes[..., 4]
    mask = responsible.to(pred.dtype)
    return {
        "coordinate": lambda_coord * (coordinate * mask).sum() / N,
        "object": (((confidence - 1) ** 2) * mask).sum() / N,
        "no_object": lambda_noobj * ((confidence ** 2) * (1 - mask)).sum() / N,
        "class": (((probabilities - target[..., 5:]) ** 2).sum(-1) * has_object.to(pred.dtype)).sum() / N,
    }


# ---------------------------------------------------------------------------------------------
# Decoding and non-maximum suppression
# ---------------------------------------------------------------------------------------------

def decode_predictions(pred: Tensor, B: int = 2, conf_threshold: float = 0.2,
                       iou_threshold: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """The detections of one image's prediction float[S, S, B * 5 + C].

    Each box's score is its confidence times the largest class probability of its cell and its
    label that class (the first maximum). Boxes with score > conf_threshold are kept, turned into
    corners (:func:`cell_boxes_to_corners`) clipped to [0, 1], and filtered by class-wise NMS
    (torchvision.ops.batched_nms) at iou_threshold. Returns (boxes float[K, 4] in image fractions,
    scores float[K], labels int64[K] in 0..C-1), by decreasing score.
    """
    boxes, probabilities = split_prediction(pred, B)
    best, labels = probabilities.max(dim=-1, keepdim=True)  # float/int64[S, S, 1]
    scores = (boxes[..., 4] * best).reshape(-1)
    labels = labels.expand(-1, -1, B).reshape(-1)
    corners = cell_boxes_to_corners(boxes[..., :4]).reshape(-1, 4).clamp(0, 1)
    keep = scores > conf_threshold
    corners, scores, labels = corners[keep], scores[keep], labels[keep]
    order = batched_nms(corners, scores, labels, iou_threshold)
    return corners[order], scores[order], labels[order]


def nms_steps(boxes: Tensor, scores: Tensor, iou_threshold: float) -> list[tuple[int, list[int]]]:
    """Greedy NMS, one decision at a time: a list of (kept index, indices it suppresses).

    boxes: float[M, 4] (x1, y1, x2, y2); scores: float[M]. Step k keeps the highest-scoring box
    still undecided and suppresses every undecided box whose IoU with it is > iou_threshold
    (torchvision.ops.nms's rule, same kept boxes in the same order; equal scores are taken in
    index order).
    """
    iou = box_iou(boxes, boxes)
    order = sorted(range(len(scores)), key=lambda k: (-float(scores[k]), k))
    undecided = list(order)
    steps = []
    while undecided:
        best = undecided.pop(0)
        suppressed = [k for k in undecided if iou[best, k] > iou_threshold]
        undecided = [k for k in undecided if k not in suppressed]
        steps.append((best, suppressed))
    return steps


def nms_state(boxes: Tensor, scores: Tensor, conf_threshold: float, iou_threshold: float,
              step: int) -> dict[str, list[int]]:
    """Where NMS stands after `step` decisions, for drawing; indices into boxes float[M, 4].

    Boxes with score <= conf_threshold are "ignored"; NMS (:func:`nms_steps`) runs on the others.
    Returns lists "ignored", "kept" (in the order NMS keeps them), "suppressed" (by the first
    `step` kept boxes), "suppressed_by" (for each suppressed box, the kept box that removed it) and
    "candidates" (not decided yet); "current" holds the last kept box, if any.
    """
    passing = [k for k in range(len(scores)) if float(scores[k]) > conf_threshold]
    ignored = [k for k in range(len(scores)) if k not in passing]
    steps = nms_steps(boxes[passing], scores[passing], iou_threshold) if passing else []
    done = steps[:max(step, 0)]
    kept = [passing[best] for best, _ in done]
    suppressed = [passing[k] for _, gone in done for k in gone]
    suppressed_by = [passing[best] for best, gone in done for _ in gone]
    candidates = [k for k in passing if k not in kept and k not in suppressed]
    return {"ignored": ignored, "kept": kept, "suppressed": suppressed, "suppressed_by": suppressed_by,
            "candidates": candidates, "current": kept[-1:]}


def soft_nms(boxes: Tensor, scores: Tensor, sigma: float = 0.5, method: str = "gaussian",
             iou_threshold: float = 0.3, score_threshold: float = 0.001) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla, Singh, Chellappa and Davis, ICCV 2017): decay scores instead of removing boxes.

    boxes: float[M, 4] (x1, y1, x2, y2); scores: float[M]. Repeatedly keep the undecided box with
    the highest current score M (equal scores: the lowest index), then multiply the score s_i of
    every other undecided box b_i by

    - "gaussian": exp(-IoU(M, b_i)^2 / sigma);
    - "linear": 1 - IoU(M, b_i) when IoU(M, b_i) > iou_threshold, else 1;

    and drop the boxes whose score falls below score_threshold (the scores only decrease, so a
    dropped box could never come back). Returns (kept indices int64[K] in the order they were
    kept, their final scores float[K], non-increasing), on the device of `boxes`; inputs are not
    modified.
    """
    if method not in ("gaussian", "linear"):
        raise ValueError(f"method must be 'gaussian' or 'linear', not {method!r}")
    current = scores.detach().clone()
    iou = box_iou(boxes.detach(), boxes.detach())
    undecided = torch.nonzero(current >= score_threshold).reshape(-1)
    kept, kept_scores = [], []
    while len(undecided):
        best = undecided[torch.argmax(current[undecided])]  # the first maximum: lowest index
        kept.append(int(best))
        kept_scores.append(current[best])
        undecided = undecided[undecided != best]
        overlap = iou[best, undecided]
        if method == "gaussian":
            decay = torch.exp(-overlap ** 2 / sigma)
        else:
            decay = torch.where(overlap > iou_threshold, 1 - overlap, torch.ones_like(overlap))
        current[undecided] = current[undecided] * decay
        undecided = undecided[current[undecided] >= score_threshold]
    keep = torch.tensor(kept, dtype=torch.int64, device=boxes.device)
    return keep, (torch.stack(kept_scores) if kept_scores else scores.new_zeros(0))


# ---------------------------------------------------------------------------------------------
# The post-processing example
# ---------------------------------------------------------------------------------------------

#: For each object of the example scene: (shift of each corner as a fraction of the box size, score).
_EXAMPLE_JITTER = [
    [((0.00, 0.00, 0.00, 0.00), 0.91), ((0.08, -0.06, 0.10, 0.04), 0.74), ((-0.12, 0.05, -0.05, 0.12), 0.52),
     ((0.30, 0.25, 0.28, 0.30), 0.05)],
    [((0.02, -0.02, 0.00, 0.03), 0.85), ((-0.10, -0.08, -0.06, -0.02), 0.63), ((0.10, 0.12, 0.14, 0.06), 0.31)],
    [((0.00, 0.03, -0.02, 0.00), 0.78), ((0.09, 0.00, 0.12, 0.10), 0.44)],
]


def example_detections() -> tuple[Tensor, dict, Tensor, Tensor]:
    """The post-processing example: (image float32[3, 128, 128], target, boxes float32[M, 4] in
    pixels, scores float32[M]).

    Three objects of a synthetic scene, each with a few overlapping detections (scores 0.91 down
    to 0.31, and a loose box scored 0.05), plus one stray detection scored 0.02: the slide's small
    confidences.
    """
    image, target = make_scene(seed=8, index=1, size=128, min_objects=3, max_objects=3)
    boxes, scores = [], []
    for box, jitters in zip(target["boxes"], _EXAMPLE_JITTER):
        size = (box[2:] - box[:2]).repeat(2)
        for shift, score in jitters:
            boxes.append((box + torch.tensor(shift) * size).clamp(0, 128))
            scores.append(score)
    boxes.append(torch.tensor([6.0, 88.0, 30.0, 120.0]))  # a stray box on the background
    scores.append(0.02)
    return image, target, torch.stack(boxes), torch.tensor(scores)


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------

def draw_grid(ax: Axes, size: float, S: int, **style) -> LineCollection:
    """Draw the S x S cells over a size x size image; one LineCollection with gid "grid"."""
    ticks = np.linspace(0, size, S + 1)
    segments = [[(t, 0), (t, size)] for t in ticks] + [[(0, t), (size, t)] for t in ticks]
    lines = LineCollection(segments, **{"colors": "white", "linewidths": 0.8, "alpha": 0.8, **style})
    lines.set_gid("grid")
    ax.add_collection(lines)
    return lines


def draw_nms_state(ax: Axes, image: Tensor, boxes: Tensor, scores: Tensor, state: dict[str, list[int]],
                   title: str | None = None, show_ignored: bool = True) -> None:
    """An image with boxes float[M, 4] (pixels) coloured by their NMS decision (:func:`nms_state`).

    Kept boxes green (the last kept one thicker), suppressed grey, undecided orange and dashed,
    ignored (below the confidence threshold) light and dotted. Each box is a Rectangle with gid
    "<decision>-<index>" and its score is written inside one of its corners (box k: corner k mod 4,
    so that neighbouring detections of one object do not write over each other).
    """
    show_image(image, ax, title)
    styles = {"ignored": (IGNORED, ":", 1.0), "suppressed": (SUPPRESSED, "-", 1.5),
              "candidates": (CANDIDATE, "--", 1.8), "kept": (KEPT, "-", 2.5)}
    for decision in ("ignored", "suppressed", "candidates", "kept"):
        if decision == "ignored" and not show_ignored:
            continue
        colour, linestyle, width = styles[decision]
        for k in state[decision]:
            x1, y1, x2, y2 = boxes[k].tolist()
            current = k in state["current"]
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linestyle=linestyle,
                                   linewidth=width + (1.5 if current else 0), gid=f"{decision.rstrip('s')}-{k}",
                                   path_effects=OUTLINE if decision == "kept" else None))
            right, bottom = k % 2 == 1, k % 4 >= 2
            ax.text(x2 - 1 if right else x1 + 1, y2 - 1 if bottom else y1 + 1, f"{float(scores[k]):.2f}", fontsize=7,
                    va="bottom" if bottom else "top", ha="right" if right else "left",
                    color="white" if decision != "ignored" else "#333333",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.8, "alpha": 0.9})


# ---------------------------------------------------------------------------------------------
# Explorers
# ---------------------------------------------------------------------------------------------

class YoloGridExplorer(Explorer):
    """The S x S grid over a synthetic image, the cells responsible for its objects, a cell's target.

    data: a :class:`odcourse.data.SyntheticShapes` (default: 50 images of 128 x 128, seed 3).
    Controls: "index" (the image), "S" (cells per side), "B" (boxes per cell, which only changes
    the prediction's length) and "row", "column" (the selected cell, clamped to the grid).

    What is drawn, for tests: on the first axes the image, the grid (gid "grid"), each object's
    box (Rectangle, gid "box-g"), its centre (Line2D, gid "centre-g"), each responsible cell
    (Rectangle with gid "responsible-i-j", i the row, j the column) and the selected cell (gid
    "selected"). The second axes hold one text with gid "target": the selected cell's target vector
    (:func:`yolo_target`) and the prediction's layout.
    """

    def __init__(self, data: SyntheticShapes | None = None, index: int = 0, S: int = 7, B: int = 2,
                 row: int = 3, column: int = 3):
        self.data = SyntheticShapes(50, size=128, seed=3) if data is None else data
        self.updating = False  # True while the row and column ranges follow a new S
        layout = widgets.Layout(width="210px")
        slider = dict(continuous_update=False, layout=layout)
        super().__init__({
            "index": widgets.IntSlider(value=index, min=0, max=len(self.data) - 1, description="image", **slider),
            "S": widgets.IntSlider(value=S, min=1, max=16, description="S", **slider),
            "B": widgets.IntSlider(value=B, min=1, max=5, description="B", **slider),
            "row": widgets.IntSlider(value=min(row, S - 1), min=0, max=S - 1, description="row", **slider),
            "column": widgets.IntSlider(value=min(column, S - 1), min=0, max=S - 1, description="column", **slider),
        })

    def _changed(self, change: dict) -> None:
        if self.updating:
            return
        if change["owner"] is self.controls["S"]:
            # A new S changes the number of cells: keep the selected cell inside the grid with one redraw.
            self.updating = True
            try:
                for name in ("row", "column"):
                    self.controls[name].max = change["new"] - 1
            finally:
                self.updating = False
        super()._changed(change)

    def draw(self, index: int, S: int, B: int, row: int, column: int) -> Figure:
        row, column = min(row, S - 1), min(column, S - 1)
        image, annotation = self.data[index]
        size = image.shape[-1]
        C = len(YOLO_CLASSES)
        boxes = boxes_to_fractions(annotation["boxes"].double(), size, size)
        labels = annotation["labels"] - 1
        target = yolo_target(boxes, labels, S, C)
        cells = responsible_cells(boxes, S)

        figure = Figure(figsize=(11, 5.4), layout="constrained")
        ax, text_ax = figure.subplots(1, 2, width_ratios=[1.1, 1])
        show_image(image, ax)
        step = size / S
        owners: dict[tuple[int, int], int] = {}
        for g, (i, j) in enumerate(cells.tolist()):
            owners.setdefault((i, j), g)
        for (i, j), g in owners.items():
            colour = PALETTE[g % len(PALETTE)]
            # A light fill with the object's colour as a thick edge shows on any object and background.
            ax.add_patch(Rectangle((j * step, i * step), step, step, facecolor=(1, 1, 1, 0.55), edgecolor=colour,
                                   linewidth=3, gid=f"responsible-{i}-{j}", zorder=3))
        draw_grid(ax, size, S)
        for g, (x1, y1, x2, y2) in enumerate(annotation["boxes"].tolist()):
            colour = PALETTE[g % len(PALETTE)]
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2,
                                   path_effects=OUTLINE, gid=f"box-{g}"))
            dropped = owners[tuple(cells[g].tolist())] != g
            ax.plot((x1 + x2) / 2, (y1 + y2) / 2, marker="X" if dropped else "o", markersize=8, color=colour,
                    markeredgecolor="black", gid=f"centre-{g}", zorder=4)
        ax.add_patch(Rectangle((column * step, row * step), step, step, fill=False, edgecolor="yellow", linewidth=3,
                               linestyle="--", gid="selected", zorder=5))
        ax.set_title(f"image {index}: {S} x {S} grid, cells of {step:.1f} pixels", fontsize=10)
        text_ax.axis("off")
        text_ax.text(0.0, 1.0, self.caption(target, labels, cells, owners, S, B, row, column), family="monospace",
                     fontsize=9, va="top", ha="left", transform=text_ax.transAxes, gid="target")
        handles = [Line2D([], [], marker="o", linestyle="none", color="#888888", markeredgecolor="black",
                          label="object centre"),
                   Line2D([], [], marker="X", linestyle="none", color="#888888", markeredgecolor="black",
                          label="centre in a cell already taken: dropped"),
                   Rectangle((0, 0), 1, 1, facecolor="#eeeeee", edgecolor="#888888", linewidth=2.5,
                             label="responsible cell (edge: its object's colour)"),
                   Rectangle((0, 0), 1, 1, fill=False, edgecolor="#c9b800", linestyle="--", linewidth=2,
                             label="selected cell")]
        text_ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
        return figure

    def caption(self, target: Tensor, labels: Tensor, cells: Tensor, owners: dict, S: int, B: int, row: int,
                column: int) -> str:
        """The explorer's text: the objects' cells, the selected cell's target, the prediction's size."""
        C = len(YOLO_CLASSES)
        lines = ["object  class      responsible cell (i, j)"]
        for g, (i, j) in enumerate(cells.tolist()):
            note = "" if owners[(i, j)] == g else "  dropped (cell taken)"
            lines.append(f"{g:6d}  {YOLO_CLASSES[int(labels[g])]:<9}  ({i}, {j}){note}")
        vector = target[row, column]
        names = ["x", "y", "w", "h", "conf"] + [f"p({name})" for name in YOLO_CLASSES]
        lines += ["", f"target of cell ({row}, {column}), 5 + C = {5 + C} numbers:"]
        lines += [f"  {name:<13} {value:.3f}" for name, value in zip(names, vector.tolist())]
        if vector[4] == 0:
            lines.append("  (no object centre here: all zeros)")
        lines += ["", f"prediction per cell: B x 5 + C = {B} x 5 + {C} = {B * 5 + C}",
                  f"whole output: {S} x {S} x {B * 5 + C} = {S * S * (B * 5 + C)} numbers"]
        return "\n".join(lines)


class NmsExplorer(Explorer):
    """Confidence threshold and greedy NMS, one decision at a time, on scored detections.

    image: float[3, H, W]; boxes: float[M, 4] in pixels; scores: float[M] (default: the page's
    :func:`example_detections`). Controls: "conf_threshold" (boxes with score <= it are ignored),
    "iou_threshold" (NMS drops a box whose IoU with a kept box is > it) and "step" (how many boxes
    NMS has kept so far; beyond the last one the result stays final).

    What is drawn, for tests: on the first axes each box as a Rectangle with gid "kept-k",
    "suppressed-k", "candidate-k" or "ignored-k" (:func:`draw_nms_state`, k the index in `boxes`).
    The second axes hold one text with gid "table": every box, its score and its decision.
    """

    def __init__(self, image: Tensor | None = None, boxes: Tensor | None = None, scores: Tensor | None = None,
                 conf_threshold: float = 0.01, iou_threshold: float = 0.5, step: int = 2):
        if image is None or boxes is None or scores is None:
            image, _, boxes, scores = example_detections()
        self.image, self.boxes, self.scores = image, boxes.detach().cpu().float(), scores.detach().cpu().float()
        layout = widgets.Layout(width="260px")
        super().__init__({
            "conf_threshold": widgets.FloatSlider(value=conf_threshold, min=0.0, max=0.95, step=0.01,
                                                  description="confidence >", continuous_update=False,
                                                  readout_format=".2f", layout=layout,
                                                  style={"description_width": "85px"}),
            "iou_threshold": widgets.FloatSlider(value=iou_threshold, min=0.05, max=0.95, step=0.05,
                                                 description="IoU >", continuous_update=False, readout_format=".2f",
                                                 layout=layout),
            "step": widgets.IntSlider(value=step, min=0, max=len(self.scores), description="step",
                                      continuous_update=False, layout=layout),
        })

    def draw(self, conf_threshold: float, iou_threshold: float, step: int) -> Figure:
        state = nms_state(self.boxes, self.scores, conf_threshold, iou_threshold, step)
        finished = not state["candidates"]
        figure = Figure(figsize=(11, 5.2), layout="constrained")
        ax, text_ax = figure.subplots(1, 2, width_ratios=[1.1, 1])
        title = (f"step {step}: {len(state['kept'])} kept" + (" (finished)" if finished else "")
                 + f", confidence > {conf_threshold:.2f}, IoU > {iou_threshold:.2f} suppressed")
        draw_nms_state(ax, self.image, self.boxes, self.scores, state, title=title)
        ax.title.set_fontsize(10)
        decision = {k: name for name in ("ignored", "kept", "suppressed", "candidates") for k in state[name]}
        iou = box_iou(self.boxes, self.boxes)
        lines = ["  k  score  decision"]
        for k in sorted(range(len(self.scores)), key=lambda k: -float(self.scores[k])):
            note = decision[k].rstrip("s")
            if note == "kept":
                note += f" (#{state['kept'].index(k) + 1})"
            elif note == "suppressed":
                by = state["suppressed_by"][state["suppressed"].index(k)]
                note += f" by box {by} (IoU {float(iou[by, k]):.2f})"
            elif note == "ignored":
                note += " (low confidence)"
            lines.append(f"{k:3d}  {float(self.scores[k]):.2f}   {note}")
        text_ax.axis("off")
        text_ax.text(0.0, 1.0, "\n".join(lines), family="monospace", fontsize=9, va="top", ha="left",
                     transform=text_ax.transAxes, gid="table")
        handles = [Line2D([], [], color=KEPT, linewidth=3, label="kept"),
                   Line2D([], [], color=SUPPRESSED, linewidth=2, label="suppressed"),
                   Line2D([], [], color=CANDIDATE, linewidth=2, linestyle="--", label="not decided yet"),
                   Line2D([], [], color="#999999", linewidth=1, linestyle=":", label="ignored: low confidence")]
        text_ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
        return figure
