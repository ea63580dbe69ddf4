"""Chapter 12 (after the slides): RetinaNet's focal loss, FCOS and DETR's set prediction.

The page uses torchvision's and scipy's own code for every operation assignment a12 has you write;
this module only builds, trains and draws:

- :func:`fcos_points` and :func:`fcos_matches`: FCOS's points as torchvision's ``AnchorGenerator``
  makes them, and the matching of ``torchvision.models.detection.FCOS.compute_loss`` for one image
  (called with a head that hands back the matches it is given);
- :class:`TinyPyramid`, :func:`small_fcos` and :func:`capstone_detector`: torchvision's ``FCOS`` on
  the course's small backbone with a three-level feature pyramid, and chapter 11's Faster R-CNN;
- :func:`train_detector`: the training loop both are trained with (same batches, same seed);
- :class:`FcosExplorer`: move a ground-truth box and see which points of which level take it;
- :class:`MatchingExplorer`: DETR's matching cost and Hungarian assignment on a small example.
"""
from __future__ import annotations

import time
import types
from collections import OrderedDict, defaultdict

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from .draw import PALETTE
from .rpn import tiny_backbone
from .widgets import Explorer

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

#: FCOS's levels in the paper and in torchvision: P3 to P7, strides 8 to 128, each level's unit s
#: equal to its stride, so that the scale ranges (4s, 8s) are (0, 64), (64, 128), ..., (512, inf).
FCOS_LEVELS = {"strides": (8, 16, 32, 64, 128), "units": (8, 16, 32, 64, 128)}

#: Chapter 11's Faster R-CNN settings (FasterRCNN's keyword arguments), on 128 x 128 images.
CAPSTONE_SETTINGS = {
    "min_size": 128, "max_size": 128, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
    "rpn_pre_nms_top_n_train": 500, "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_train": 200,
    "rpn_post_nms_top_n_test": 100, "rpn_nms_thresh": 0.7, "rpn_fg_iou_thresh": 0.7, "rpn_bg_iou_thresh": 0.3,
    "rpn_batch_size_per_image": 256, "rpn_positive_fraction": 0.5, "box_score_thresh": 0.05,
    "box_nms_thresh": 0.5, "box_detections_per_img": 100, "box_fg_iou_thresh": 0.5, "box_bg_iou_thresh": 0.5,
    "box_batch_size_per_image": 64, "box_positive_fraction": 0.25, "bbox_reg_weights": (10.0, 10.0, 5.0, 5.0)}


# FCOS's points and torchvision's matching ------------------------------------------------------

def fcos_points(image_size: int, strides=FCOS_LEVELS["strides"], units=FCOS_LEVELS["units"],
                dtype=torch.float32) -> tuple[Tensor, list[int]]:
    """FCOS's points for a square image, as torchvision's AnchorGenerator makes them for FCOS: one
    square anchor of side units[k] per location of level k (ceil(image_size / strides[k]) locations
    a side), centred on (j strides[k], i strides[k]), row by row, level after level.

    Returns (anchors float[N, 4] as (x1, y1, x2, y2) pixels, the number of points of each level)."""
    anchors, counts = [], []
    for stride, unit in zip(strides, units):
        cells = -(-image_size // stride)
        ys, xs = torch.meshgrid(torch.arange(cells) * stride, torch.arange(cells) * stride, indexing="ij")
        centre = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).to(torch.float64)
        anchors.append(torch.cat([centre - unit / 2, centre + unit / 2], 1))
        counts.append(cells * cells)
    return torch.cat(anchors).to(dtype), counts


def fcos_matches(anchors: Tensor, boxes: Tensor, counts: list[int], radius: float = 1.5) -> Tensor:
    """int64[N]: the object each point takes (-1: none), computed by torchvision's own
    ``FCOS.compute_loss`` for one image, whose head is replaced by one that returns the matches."""
    from torchvision.models.detection.fcos import FCOS

    head = types.SimpleNamespace(compute_loss=lambda targets, outputs, anchors, matched_idxs: matched_idxs)
    model = types.SimpleNamespace(center_sampling_radius=radius, head=head)
    return FCOS.compute_loss(model, [{"boxes": boxes}], {}, [anchors], counts)[0]


# The two detectors of the page ------------------------------------------------------------------

class TinyPyramid(nn.Module):
    """The course's small backbone (chapter 5's ``tiny_backbone``, stride 8) with two more stride-2
    stages and torchvision's ``FeaturePyramidNetwork`` on top: float[N, 3, H, W] -> an ordered dict
    of three 64-channel maps, "p3" (stride 8), "p4" (16) and "p5" (32)."""

    def __init__(self, seed: int = 0, channels: int = 64):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        self.body = tiny_backbone(seed)

        def stage():
            return nn.Sequential(nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU())

        with torch.random.fork_rng(devices=[]):  # the CPU generator only; it is restored on exit
            torch.manual_seed(seed + 1)
            self.c4, self.c5 = stage(), stage()
            self.fpn = FeaturePyramidNetwork([64, 64, 64], channels)
        self.out_channels = channels

    def forward(self, images: Tensor) -> "OrderedDict[str, Tensor]":
        c3 = self.body(images)
        c4 = self.c4(c3)
        return self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", self.c5(c4))]))


def small_fcos(num_classes: int = 4, seed: int = 0, image_size: int = 128):
    """torchvision's ``FCOS`` on :class:`TinyPyramid`: levels of stride 8, 16 and 32 with units equal
    to the strides (one anchor point per location), a head of two 3 x 3 convolutions per branch,
    torchvision's defaults otherwise (focal loss, GIoU loss, centre-ness, centre sampling radius
    1.5), except the score threshold (0.05, as the page's other detectors) and the image size (no
    resizing). Initialised from `seed` without touching the global random state."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    backbone = TinyPyramid(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = FCOSHead(backbone.out_channels, 1, num_classes, num_convs=2)
    anchors = AnchorGenerator(((8,), (16,), (32,)), ((1.0,),) * 3)
    return FCOS(backbone, num_classes, min_size=image_size, max_size=image_size, image_mean=IMAGENET_MEAN,
                image_std=IMAGENET_STD, anchor_generator=anchors, head=head, score_thresh=0.05,
                detections_per_img=100)


def capstone_detector(num_classes: int = 4, seed: int = 0):
    """Chapter 11's Faster R-CNN (torchvision's ``FasterRCNN`` with :data:`CAPSTONE_SETTINGS`) on the
    same small backbone: anchors of 16, 32 and 64 pixels and ratios 0.5, 1, 2 on the stride-8 map,
    ROI Align 7 x 7 and a two-layer box head of 256 units. Initialised from `seed` without touching
    the global random state."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    backbone = tiny_backbone(seed)
    backbone.out_channels = 64
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FasterRCNN(backbone, num_classes=None,
                          rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
                          box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), box_head=TwoMLPHead(64 * 7 * 7, 256),
                          box_predictor=FastRCNNPredictor(256, num_classes), **CAPSTONE_SETTINGS)


def train_detector(model: nn.Module, data: list, steps: int, batch_size: int, lr: float, seed: int = 0,
                   device: str | torch.device = "cpu") -> tuple[dict[str, np.ndarray], float]:
    """Train a torchvision detector (training mode: images and targets in, a dict of losses out) with
    Adam on the sum of its losses and a one-cycle learning rate (rising over the first 30% of the
    steps), on batches drawn from `data` (a list of (image, target) pairs) by a generator of its own
    seeded with `seed`, as chapter 11 does; the global generator (the detectors' samplers) is seeded
    too, so a run is repeatable on a CPU. Returns ({loss name: float64[steps]}, training seconds)."""
    torch.manual_seed(seed)
    batches = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.3)
    history = defaultdict(list)
    model.to(device).train()
    start = time.perf_counter()
    for _ in range(steps):
        chosen = torch.randint(len(data), (batch_size,), generator=batches).tolist()
        images = [data[i][0].to(device) for i in chosen]
        targets = [{key: data[i][1][key].to(device) for key in ("boxes", "labels")} for i in chosen]
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        schedule.step()
        for name, value in losses.items():
            history[name].append(value.item())
    seconds = time.perf_counter() - start
    model.eval()
    return {name: np.array(values) for name, values in history.items()}, seconds


@torch.no_grad()
def detect_all(model: nn.Module, images: list[Tensor], chunk: int = 20, device: str | torch.device = "cpu") -> list:
    """The model's detections (evaluation mode) for every image, on the CPU, `chunk` images at a time."""
    model.eval()
    found = []
    for first in range(0, len(images), chunk):
        outputs = model([image.to(device) for image in images[first:first + chunk]])
        found += [{key: value.cpu() for key, value in output.items()} for output in outputs]
    return found


# Explorers ---------------------------------------------------------------------------------------

class FcosExplorer(Explorer):
    """FCOS's matching on the five levels P3 to P7 of a square image (default 512 x 512 pixels):
    a ground-truth box moved and resized with sliders, and a second, fixed object (``other``), small,
    to show the ambiguity rule (the smaller box wins the points both could take).

    Controls: "x", "y" (the box's centre, pixels), "width", "height" (pixels) and "radius" (the
    centre sampling radius, in units of the level). Matching is torchvision's (:func:`fcos_matches`).

    What is drawn, for tests: one axes per level; on each, the level's points that take the moved
    box (a Line2D with gid "box-points-k", k the level, markers at the points), those that take the
    other object (gid "other-points-k"), the box (Rectangle, gid "box") and the other object
    (Rectangle, gid "other"); the title of each axes starts with "P{3 + k}" and counts the box's
    points. The last axes holds a text with gid "caption": per level its range and counts.
    """

    def __init__(self, image_size: int = 512, x: int = 200, y: int = 224, width: int = 112, height: int = 96,
                 radius: float = 1.5, other=(196.0, 212.0, 228.0, 244.0)):
        self.image_size = image_size
        self.other = torch.tensor([other], dtype=torch.float64).reshape(-1, 4)
        self.anchors, self.counts = fcos_points(image_size, dtype=torch.float64)
        slider = widgets.Layout(width="300px")
        super().__init__({
            "x": widgets.IntSlider(value=x, min=0, max=image_size, step=4, description="centre x",
                                   continuous_update=False, layout=slider),
            "y": widgets.IntSlider(value=y, min=0, max=image_size, step=4, description="centre y",
                                   continuous_update=False, layout=slider),
            "width": widgets.IntSlider(value=width, min=8, max=image_size, step=4, description="width",
                                       continuous_update=False, layout=slider),
            "height": widgets.IntSlider(value=height, min=8, max=image_size, step=4, description="height",
                                        continuous_update=False, layout=slider),
            "radius": widgets.FloatSlider(value=radius, min=0.5, max=4.0, step=0.5, description="radius",
                                          continuous_update=False, layout=slider),
        })

    def box(self, x: int, y: int, width: int, height: int) -> Tensor:
        """float64[1, 4]: the moved box as (x1, y1, x2, y2) pixels."""
        return torch.tensor([[x - width / 2, y - height / 2, x + width / 2, y + height / 2]], dtype=torch.float64)

    def matches(self, x: int, y: int, width: int, height: int, radius: float) -> Tensor:
        """int64[N]: 0 for the points that take the moved box, 1 for the other object, -1 otherwise."""
        boxes = torch.cat([self.box(x, y, width, height), self.other])
        return fcos_matches(self.anchors, boxes, self.counts, radius)

    def draw(self, x: int, y: int, width: int, height: int, radius: float) -> Figure:
        matched = self.matches(x, y, width, height, radius)
        box = self.box(x, y, width, height)[0]
        figure = Figure(figsize=(14, 3.6), layout="constrained")
        axes = figure.subplots(1, len(self.counts) + 1, width_ratios=[1] * len(self.counts) + [1.15])
        units = FCOS_LEVELS["units"]
        lines, start = [], 0
        for k, (ax, count) in enumerate(zip(axes, self.counts)):
            level_matches = matched[start:start + count]
            points = (self.anchors[start:start + count, :2] + self.anchors[start:start + count, 2:]) / 2
            start += count
            if count <= 1024:  # the fine levels have too many points to draw them all legibly
                ax.plot(points[:, 0], points[:, 1], linestyle="none", marker=".", markersize=2, color="#bbbbbb")
            mine, theirs = points[level_matches == 0], points[level_matches == 1]
            ax.plot(mine[:, 0], mine[:, 1], linestyle="none", marker="o", markersize=5, color=PALETTE[1],
                    gid=f"box-points-{k}")
            ax.plot(theirs[:, 0], theirs[:, 1], linestyle="none", marker="o", markersize=5, color=PALETTE[0],
                    gid=f"other-points-{k}")
            x1, y1, x2, y2 = box.tolist()
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=PALETTE[1], linewidth=1.8,
                                   gid="box"))
            for ox1, oy1, ox2, oy2 in self.other.tolist():
                ax.add_patch(Rectangle((ox1, oy1), ox2 - ox1, oy2 - oy1, fill=False, edgecolor=PALETTE[0],
                                       linewidth=1.4, linestyle="--", gid="other"))
            ax.set_xlim(0, self.image_size)
            ax.set_ylim(self.image_size, 0)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            low = "0" if k == 0 else f"{4 * units[k]}"
            high = "inf" if k == len(self.counts) - 1 else f"{8 * units[k]}"
            ax.set_title(f"P{3 + k} (stride {units[k]}): {len(mine)} point(s)\nrange ({low}, {high})", fontsize=9)
            lines.append(f"P{3 + k}  ({low:>3}, {high:>4})  {len(mine):4d}  {len(theirs):4d}")
        reach = torch.stack([box[2] - box[0], box[3] - box[1]]).max() / 2
        text = axes[-1]
        text.axis("off")
        caption = ["level  range        box  other", *lines, "",
                   f"box {width} x {height} px at ({x}, {y})",
                   f"its centre point reaches max(l,t,r,b)",
                   f"= {float(reach):.0f} px to its farthest side",
                   f"centre sampling: within {radius:g} x stride", "of the box's centre", "",
                   "green: points that take the box", "red: points that take the small",
                   "object (dashed): the smaller wins"]
        text.text(0.0, 1.0, "\n".join(caption), family="monospace", fontsize=8.5, va="top", ha="left",
                  transform=text.transAxes, gid="caption")
        return figure


#: The small DETR example: 3 objects and 6 predictions (class probabilities over "rectangle",
#: "ellipse", "triangle" and "no object"; boxes (cx, cy, w, h) in image fractions), constructed by
#: hand: two predictions on object 0 (a duplicate), one a little off object 1, one on object 2 with
#: the wrong class favoured, and two stray ones.
DETR_EXAMPLE = {
    "labels": torch.tensor([0, 1, 2]),
    "boxes": torch.tensor([[0.25, 0.30, 0.30, 0.30], [0.70, 0.35, 0.25, 0.40], [0.50, 0.75, 0.40, 0.25]]),
    "probabilities": torch.tensor([[0.70, 0.10, 0.05, 0.15], [0.55, 0.15, 0.10, 0.20], [0.10, 0.60, 0.10, 0.20],
                                   [0.10, 0.10, 0.30, 0.50], [0.20, 0.20, 0.20, 0.40], [0.05, 0.05, 0.10, 0.80]]),
    "pred_boxes": torch.tensor([[0.26, 0.31, 0.28, 0.30], [0.22, 0.28, 0.34, 0.32], [0.66, 0.38, 0.22, 0.36],
                                [0.52, 0.73, 0.36, 0.28], [0.80, 0.80, 0.20, 0.20], [0.15, 0.80, 0.15, 0.15]]),
}


def detr_cost(probabilities: Tensor, pred_boxes: Tensor, labels: Tensor, boxes: Tensor,
              weights=(1.0, 5.0, 2.0)) -> Tensor:
    """DETR's matching cost float[Q, G]: -w_class p(label) + w_L1 |b - b'|_1 - w_GIoU GIoU, boxes
    (cx, cy, w, h), the GIoU of their corners (torchvision's box_convert and generalized_box_iou)."""
    from torchvision.ops import box_convert, generalized_box_iou

    giou = generalized_box_iou(box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(boxes, "cxcywh", "xyxy"))
    return (-weights[0] * probabilities[:, labels] + weights[1] * torch.cdist(pred_boxes, boxes, p=1)
            - weights[2] * giou)


def hungarian(cost: Tensor) -> tuple[Tensor, Tensor]:
    """scipy's linear_sum_assignment on a cost tensor: (rows, cols) int64 tensors, sorted by row."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


class MatchingExplorer(Explorer):
    """DETR's matching on :data:`DETR_EXAMPLE`: move prediction 0 and change the cost's weights.

    Controls: "x", "y" (prediction 0's centre, image fractions), "w_class", "w_l1", "w_giou" (the
    weights of the cost). Left axes: the objects (Rectangle, gid "object-g", thick) and the
    predictions (Rectangle, gid "prediction-q"; solid when matched, dotted when they learn "no
    object"), a line from each object to its prediction (Line2D, gid "match-g"). Right axes: the
    cost matrix (rows: predictions, columns: objects), the assignment's cells outlined (Rectangle,
    gid "chosen-q-g"), and its title with the total cost.
    """

    def __init__(self, x: float = 0.26, y: float = 0.31, w_class: float = 1.0, w_l1: float = 5.0,
                 w_giou: float = 2.0, example: dict | None = None):
        self.example = dict(DETR_EXAMPLE if example is None else example)
        slider = widgets.Layout(width="260px")

        def weight(value, name):
            return widgets.FloatSlider(value=value, min=0.0, max=10.0, step=0.5, description=name,
                                       continuous_update=False, layout=slider)

        super().__init__({
            "x": widgets.FloatSlider(value=x, min=0.05, max=0.95, step=0.01, description="pred. 0 x",
                                     continuous_update=False, layout=slider),
            "y": widgets.FloatSlider(value=y, min=0.05, max=0.95, step=0.01, description="pred. 0 y",
                                     continuous_update=False, layout=slider),
            "w_class": weight(w_class, "w_class"), "w_l1": weight(w_l1, "w_L1"), "w_giou": weight(w_giou, "w_GIoU"),
        })

    def predictions(self, x: float, y: float) -> Tensor:
        boxes = self.example["pred_boxes"].clone()
        boxes[0, :2] = torch.tensor([x, y])
        return boxes

    def assignment(self, x: float, y: float, w_class: float, w_l1: float, w_giou: float):
        """(cost float[Q, G], rows, cols) for these control values."""
        cost = detr_cost(self.example["probabilities"], self.predictions(x, y), self.example["labels"],
                         self.example["boxes"], (w_class, w_l1, w_giou))
        rows, cols = hungarian(cost)
        return cost, rows, cols

    def draw(self, x: float, y: float, w_class: float, w_l1: float, w_giou: float) -> Figure:
        from torchvision.ops import box_convert

        cost, rows, cols = self.assignment(x, y, w_class, w_l1, w_giou)
        predictions = box_convert(self.predictions(x, y), "cxcywh", "xyxy")
        objects = box_convert(self.example["boxes"], "cxcywh", "xyxy")
        figure = Figure(figsize=(11, 4.8), layout="constrained")
        scene, matrix = figure.subplots(1, 2, width_ratios=[1, 0.9])
        partner = dict(zip(rows.tolist(), cols.tolist()))
        names = ("rectangle", "ellipse", "triangle")
        for g, (x1, y1, x2, y2) in enumerate(objects.tolist()):
            scene.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=True, alpha=0.15, facecolor=PALETTE[g],
                                      edgecolor=PALETTE[g], linewidth=3, gid=f"object-{g}"))
            scene.text(x1, y1 - 0.01, f"object {g}: {names[int(self.example['labels'][g])]}", fontsize=8,
                       color=PALETTE[g])
        for q, (x1, y1, x2, y2) in enumerate(predictions.tolist()):
            matched = q in partner
            colour = PALETTE[partner[q]] if matched else "#888888"
            scene.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                      linewidth=1.8 if matched else 1.0, linestyle="-" if matched else ":",
                                      gid=f"prediction-{q}"))
            scene.text(x2, y2, f"{q}", fontsize=8, color=colour, ha="right", va="bottom")
        centres = self.predictions(x, y)[:, :2]
        for q, g in partner.items():
            gx, gy = self.example["boxes"][g, :2].tolist()
            scene.add_line(Line2D([gx, float(centres[q, 0])], [gy, float(centres[q, 1])], color=PALETTE[g],
                                  linewidth=1.2, gid=f"match-{g}"))
        scene.set_xlim(0, 1)
        scene.set_ylim(1, 0)
        scene.set_aspect("equal")
        scene.set_title("objects (filled) and predictions: matched (solid) or 'no object' (dotted)", fontsize=9)
        values = cost.numpy()
        matrix.imshow(values, cmap="viridis_r", aspect="auto")
        for q in range(values.shape[0]):
            for g in range(values.shape[1]):
                matrix.text(g, q, f"{values[q, g]:.2f}", ha="center", va="center", fontsize=8,
                            color="black" if values[q, g] < values.mean() else "white")
        for q, g in zip(rows.tolist(), cols.tolist()):
            matrix.add_patch(Rectangle((g - 0.5, q - 0.5), 1, 1, fill=False, edgecolor="#e6194b", linewidth=2.5,
                                       gid=f"chosen-{q}-{g}"))
        matrix.set_xticks(range(values.shape[1]), [f"object {g}" for g in range(values.shape[1])], fontsize=8)
        matrix.set_yticks(range(values.shape[0]), [f"prediction {q}" for q in range(values.shape[0])], fontsize=8)
        total = float(values[rows.numpy(), cols.numpy()].sum())
        matrix.set_title(f"cost C (weights {w_class:g}, {w_l1:g}, {w_giou:g}): the assignment costs {total:.2f}",
                         fontsize=9)
        return figure
