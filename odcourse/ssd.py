"""Chapter 9 (SSD): default boxes, matching, offsets, the SSD loss, a tiny SSD, mAP@0.5, an explorer.

The page's SSD follows one set of conventions (assignment a09 uses the same):

- boxes are (x1, y1, x2, y2) in **image fractions** (pixels divided by the image's width and
  height) unless a docstring says pixels;
- the default boxes are torchvision's ``DefaultBoxGenerator``'s: for feature map k of f_k rows
  and columns, with scales s_k and s_{k+1}, every cell (i, j), row by row, gets the (w, h) pairs
  (s_k, s_k), (s'_k, s'_k) with s'_k = sqrt(s_k s_{k+1}), then for each aspect ratio r the pair
  (s_k sqrt r, s_k / sqrt r) and its transpose, centred at ((j + 0.5) / f_k, (i + 0.5) / f_k), or
  ((j + 0.5) step_k / W, (i + 0.5) step_k / H) when steps are given; w and h are clipped to
  [0, 1] when `clip`;
- matching is torchvision's ``SSDMatcher`` at IoU 0.5 and the offsets are torchvision's
  ``BoxCoder(weights=(10, 10, 5, 5))``, that is variances (0.1, 0.2);
- class labels: 0 is the background, 1..C the objects (the synthetic data's labels).

What this module offers:

- :data:`SSD300`, :func:`paper_scales`, :func:`box_shapes`, :func:`make_default_boxes`,
  :func:`boxes_per_level`: the default boxes;
- :func:`match_to_defaults`, :func:`encode_offsets`, :func:`decode_offsets`, :func:`image_targets`:
  from an image's objects to each default box's class and offsets;
- :func:`select_hard_negatives`, :func:`ssd_loss_terms`: the loss, with hard negative mining;
- :class:`TinySSD`, :func:`train_ssd`, :func:`detect`: the page's small SSD, its training loop and
  its post-processing (score threshold, class-wise NMS, top-k);
- :func:`mean_ap_50`: the mean average precision at IoU 0.5 of a detector on a data set;
- :class:`DefaultBoxExplorer`: a feature map's cell and its default boxes, over an image.

The page uses these to show and train; the graded functions of assignment a09 must not use
them (no graded function may use the helper package).
"""
from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.patheffects import withStroke
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_convert, box_iou

from .data import make_scene
from .draw import PALETTE, show_image
from .ranking import pr_area, rank_class
from .widgets import Explorer

#: SSD300's default boxes (Liu et al. 2016, as built by torchvision's ssd300_vgg16): 8732 boxes.
SSD300 = {
    "feature_map_sizes": [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)],
    "scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    "aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    "steps": [8, 16, 32, 64, 100, 300],
    "image_size": (300, 300),
}
#: The offsets' variances: centre offsets are divided by 0.1, log sizes by 0.2.
VARIANCES = (0.1, 0.2)
#: Larger log-size offsets are clamped before exp when decoding (torchvision's BoxCoder does the same).
LOG_SIZE_CLIP = math.log(1000.0 / 16)
#: A dark edge around coloured lines, so that they show on any background.
OUTLINE = [withStroke(linewidth=3.5, foreground="#222222")]


# ---------------------------------------------------------------------------------------------
# Default boxes
# ---------------------------------------------------------------------------------------------

def paper_scales(num_maps: int, s_min: float = 0.2, s_max: float = 0.9) -> list[float]:
    """The paper's scales s_k = s_min + (s_max - s_min)(k - 1)/(m - 1), k = 1..m, then 1.0.

    Returns num_maps + 1 floats: the extra last scale only serves s'_m = sqrt(s_m s_{m+1}), as
    in torchvision's DefaultBoxGenerator when it is given no scales (with one map: [s_min, s_max]).
    """
    if num_maps == 1:
        return [s_min, s_max]
    return [s_min + (s_max - s_min) * k / (num_maps - 1) for k in range(num_maps)] + [1.0]


def box_shapes(scale: float, next_scale: float, ratios) -> list[tuple[float, float, str]]:
    """The (w, h) of a cell's default boxes on one feature map, in torchvision's order, with a name.

    (s, s), (s', s') with s' = sqrt(scale * next_scale), then (s sqrt r, s / sqrt r) and
    (s / sqrt r, s sqrt r) for each ratio r. Sizes are fractions of the image, not clipped.
    """
    shapes = [(scale, scale, "s_k"), (math.sqrt(scale * next_scale),) * 2 + ("s'_k",)]
    for ratio in ratios:
        root = math.sqrt(ratio)
        shapes += [(scale * root, scale / root, f"ratio {ratio:g}"), (scale / root, scale * root, f"ratio 1/{ratio:g}")]
    return shapes


def make_default_boxes(feature_map_sizes, scales, aspect_ratios, steps=None, image_size=None, clip: bool = True,
                       dtype: torch.dtype = torch.float32) -> Tensor:
    """Every default box of every feature map: float[D, 4] (x1, y1, x2, y2) in image fractions.

    feature_map_sizes: [(rows, columns)] per map; scales: len(maps) + 1 floats; aspect_ratios: a
    list of ratios per map; steps (optional): pixels per cell on each map, with image_size =
    (H, W). Order: map by map, cells row by row, the cell's boxes as in :func:`box_shapes`;
    D = sum of rows x columns x (2 + 2 len(ratios)). The (w, h) are clipped to [0, 1] when `clip`
    (the corners may still leave the image).
    """
    levels = []
    for k, (rows, columns) in enumerate(feature_map_sizes):
        wh = torch.tensor([(w, h) for w, h, _ in box_shapes(scales[k], scales[k + 1], aspect_ratios[k])],
                          dtype=torch.float64)
        if clip:
            wh = wh.clamp(0, 1)
        if steps is not None:  # cells of step_k pixels: centres (j + 0.5) step_k / W
            x_cells, y_cells = image_size[1] / steps[k], image_size[0] / steps[k]
        else:
            x_cells, y_cells = columns, rows
        cx = (torch.arange(columns, dtype=torch.float64) + 0.5) / x_cells
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) / y_cells
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # row-major cells
        centres = torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=1)  # float[cells, 2]
        boxes = torch.cat([centres[:, None, :].expand(-1, len(wh), 2), wh[None].expand(len(centres), -1, 2)], dim=2)
        levels.append(boxes.reshape(-1, 4))
    return box_convert(torch.cat(levels), "cxcywh", "xyxy").to(dtype)


def boxes_per_level(feature_map_sizes, aspect_ratios) -> list[int]:
    """How many default boxes each feature map contributes: rows x columns x (2 + 2 len(ratios))."""
    return [rows * columns * (2 + 2 * len(ratios)) for (rows, columns), ratios in zip(feature_map_sizes, aspect_ratios)]


# ---------------------------------------------------------------------------------------------
# Matching and offsets
# ---------------------------------------------------------------------------------------------

def match_to_defaults(gt_boxes: Tensor, default_boxes: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """The ground truth each default box is matched to: int64[D], -1 for the background.

    gt_boxes: float[G, 4], default_boxes: float[D, 4], both (x1, y1, x2, y2) in the same units.
    Each default box takes the ground truth with which its IoU is the largest (ties: the lowest
    index) when that IoU is >= iou_threshold; then every ground truth takes its own best default
    box (ties: the lowest index), whatever the IoU, the later ground truth winning a box that two
    share. This is torchvision's SSDMatcher.
    """
    if len(gt_boxes) == 0:
        return torch.full((len(default_boxes),), -1, dtype=torch.int64, device=default_boxes.device)
    iou = box_iou(gt_boxes, default_boxes)  # float[G, D]
    best_iou, best_gt = iou.max(dim=0)
    matches = torch.where(best_iou >= iou_threshold, best_gt, torch.full_like(best_gt, -1))
    for g, d in enumerate(iou.argmax(dim=1).tolist()):  # in order, so that a later ground truth wins
        matches[d] = g
    return matches


def encode_offsets(boxes: Tensor, default_boxes: Tensor, variances=VARIANCES) -> Tensor:
    """The offsets (dx, dy, dw, dh) that turn default boxes into boxes: float[..., 4].

    boxes, default_boxes: float[..., 4] (x1, y1, x2, y2), paired box by box. With centres
    (cx, cy) and sizes (w, h): dx = (g_cx - d_cx) / d_w / v0, dy = (g_cy - d_cy) / d_h / v0,
    dw = log(g_w / d_w) / v1, dh = log(g_h / d_h) / v1 with (v0, v1) = variances. With (0.1, 0.2)
    this is torchvision's BoxCoder(weights=(10, 10, 5, 5)).encode_single.
    """
    g = box_convert(boxes, "xyxy", "cxcywh")
    d = box_convert(default_boxes, "xyxy", "cxcywh")
    centre = (g[..., :2] - d[..., :2]) / d[..., 2:] / variances[0]
    size = torch.log(g[..., 2:] / d[..., 2:]) / variances[1]
    return torch.cat([centre, size], dim=-1)


def decode_offsets(offsets: Tensor, default_boxes: Tensor, variances=VARIANCES) -> Tensor:
    """The inverse of :func:`encode_offsets`: boxes float[..., 4] (x1, y1, x2, y2).

    The slides' P_x = A_x + A_w dx, P_y = A_y + A_h dy, P_w = A_w exp(dw), P_h = A_h exp(dh), with
    dx, dy multiplied by v0 and dw, dh by v1 first; dw, dh are clamped at log(1000 / 16) so that
    an untrained network cannot overflow exp (torchvision's BoxCoder does the same).
    """
    d = box_convert(default_boxes, "xyxy", "cxcywh")
    centre = d[..., :2] + d[..., 2:] * offsets[..., :2] * variances[0]
    size = d[..., 2:] * torch.exp((offsets[..., 2:] * variances[1]).clamp(max=LOG_SIZE_CLIP))
    return box_convert(torch.cat([centre, size], dim=-1), "cxcywh", "xyxy")


def image_targets(gt_boxes: Tensor, gt_labels: Tensor, default_boxes: Tensor, iou_threshold: float = 0.5,
                  variances=VARIANCES) -> tuple[Tensor, Tensor]:
    """One image's training targets: (labels int64[D], offsets float[D, 4]).

    gt_boxes: float[G, 4] and default_boxes float[D, 4] (x1, y1, x2, y2), same units; gt_labels:
    int64[G] in 1..C. A matched default box (:func:`match_to_defaults`) gets its ground truth's
    label and :func:`encode_offsets`; a background box gets label 0 and offsets 0 (never used).
    """
    matches = match_to_defaults(gt_boxes, default_boxes, iou_threshold)
    positive = matches >= 0
    labels = torch.zeros(len(default_boxes), dtype=torch.int64, device=default_boxes.device)
    offsets = torch.zeros_like(default_boxes)
    labels[positive] = gt_labels[matches[positive]].to(labels.device)
    offsets[positive] = encode_offsets(gt_boxes[matches[positive]], default_boxes[positive], variances)
    return labels, offsets


# ---------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------

def select_hard_negatives(conf_loss: Tensor, labels: Tensor, neg_pos_ratio: int = 3) -> Tensor:
    """The hard negatives: bool[N, D], True for the background boxes that enter the confidence loss.

    conf_loss: float[N, D], each default box's cross-entropy; labels: int64[N, D], 0 = background.
    In each image with P positives (labels > 0), the min(neg_pos_ratio x P, number of background
    boxes) background boxes with the largest loss are chosen (equal losses: the lower index first);
    an image without positives contributes none.
    """
    negative = labels == 0
    wanted = neg_pos_ratio * (labels > 0).sum(dim=1, keepdim=True)  # int64[N, 1]
    ranked = torch.where(negative, conf_loss, torch.full_like(conf_loss, -math.inf))
    order = ranked.sort(dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return negative & (rank < wanted)


def ssd_loss_terms(cls_logits: Tensor, loc_pred: Tensor, labels: Tensor, loc_targets: Tensor,
                   neg_pos_ratio: int = 3, alpha: float = 1.0) -> dict[str, Tensor]:
    """SSD's two loss terms, each divided by the number of positives: {"localisation", "confidence"}.

    cls_logits: float[N, D, C + 1] (class 0 the background); loc_pred, loc_targets: float[N, D, 4];
    labels: int64[N, D]. With N_pos the number of positives (labels > 0) in the batch (1 if none):

    - "localisation": alpha x the sum over positives of smooth L1 (beta 1) between loc_pred and
      loc_targets, over the 4 offsets, / N_pos;
    - "confidence": the softmax cross-entropy summed over the positives and the hard negatives
      (:func:`select_hard_negatives`), / N_pos.

    Their sum is L = (L_conf + alpha L_loc) / N_pos.
    """
    positive = labels > 0
    num_positive = max(int(positive.sum()), 1)
    conf_loss = F.cross_entropy(cls_logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
    with torch.no_grad():  # the choice of negatives is a constant of the loss
        hard_negative = select_hard_negatives(conf_loss, labels, neg_pos_ratio)
    loc_loss = F.smooth_l1_loss(loc_pred[positive], loc_targets[positive], reduction="sum", beta=1.0)
    return {"localisation": alpha * loc_loss / num_positive,
            "confidence": conf_loss[positive | hard_negative].sum() / num_positive}


# ---------------------------------------------------------------------------------------------
# The page's small SSD
# ---------------------------------------------------------------------------------------------

def _conv_block(channels_in: int, channels_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels_out), nn.ReLU()]


class TinySSD(nn.Module):
    """A small SSD: three feature maps (strides 8, 16, 32) and a 3 x 3 convolution predictor on each.

    images float[N, 3, H, W] (H, W multiples of 32) -> (cls_logits float[N, D, num_classes],
    loc_pred float[N, D, 4]), D = sum over maps of rows x columns x boxes_per_location[k], in the
    order of :func:`make_default_boxes` (map by map, cells row by row, boxes within a cell).
    num_classes counts the background. Initialised from `seed` without touching the global
    random state.
    """

    channels = (48, 64, 96)

    def __init__(self, boxes_per_location=(4, 6, 6), num_classes: int = 4, seed: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.boxes_per_location = tuple(boxes_per_location)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stages = nn.ModuleList([
                nn.Sequential(*_conv_block(3, 16, 2), *_conv_block(16, 32, 2), *_conv_block(32, 48, 2),
                              *_conv_block(48, 48)),                          # stride 8
                nn.Sequential(*_conv_block(48, 64, 2), *_conv_block(64, 64)),  # stride 16
                nn.Sequential(*_conv_block(64, 96, 2), *_conv_block(96, 96)),  # stride 32
            ])
            self.class_heads = nn.ModuleList(nn.Conv2d(c, k * num_classes, 3, padding=1)
                                             for c, k in zip(self.channels, self.boxes_per_location))
            self.box_heads = nn.ModuleList(nn.Conv2d(c, k * 4, 3, padding=1)
                                           for c, k in zip(self.channels, self.boxes_per_location))

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """The three feature maps float[N, channels_k, H / s_k, W / s_k], s_k = 8, 16, 32."""
        maps, x = [], images
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        scores, offsets = [], []
        for feature_map, class_head, box_head in zip(self.feature_maps(images), self.class_heads, self.box_heads):
            n, _, rows, columns = feature_map.shape
            # channels are (box, value) per location: move them last, then one row per default box
            scores.append(class_head(feature_map).view(n, -1, self.num_classes, rows, columns)
                          .permute(0, 3, 4, 1, 2).reshape(n, -1, self.num_classes))
            offsets.append(box_head(feature_map).view(n, -1, 4, rows, columns).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return torch.cat(scores, dim=1), torch.cat(offsets, dim=1)


def _flip(boxes: Tensor, horizontal: bool) -> Tensor:
    """Boxes float[G, 4] in image fractions, mirrored left-right (horizontal) or up-down."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    if horizontal:
        return torch.stack([1 - x2, y1, 1 - x1, y2], dim=-1)
    return torch.stack([x1, 1 - y2, x2, 1 - y1], dim=-1)


def train_ssd(model: TinySSD, images: Tensor, boxes: list[Tensor], labels: list[Tensor], default_boxes: Tensor,
              steps: int, batch_size: int = 32, lr: float = 3e-3, seed: int = 0) -> np.ndarray:
    """Train `model` with Adam (one-cycle schedule) on :func:`ssd_loss_terms`; return the loss terms.

    images: float[M, 3, H, W]; boxes: per image float[G_i, 4] in image fractions; labels: per
    image int64[G_i] in 1..C; default_boxes: float[D, 4] in image fractions. Each step draws
    `batch_size` images (with a generator seeded by `seed`), flips each left-right and up-down at
    random, matches and encodes its objects (:func:`image_targets`) and takes one step. Returns
    float64[steps, 2]: (localisation, confidence) of each step. Leaves the model in training mode.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1), pct_start=0.2)
    generator = torch.Generator().manual_seed(seed)
    history = np.zeros((steps, 2))
    model.train()
    for step in range(steps):
        chosen = torch.randint(len(images), (batch_size,), generator=generator).tolist()
        flips = torch.rand(batch_size, 2, generator=generator) < 0.5
        batch_images, batch_labels, batch_offsets = [], [], []
        for k, (left_right, up_down) in zip(chosen, flips.tolist()):
            image, image_boxes = images[k], boxes[k]
            if left_right:
                image, image_boxes = image.flip(-1), _flip(image_boxes, True)
            if up_down:
                image, image_boxes = image.flip(-2), _flip(image_boxes, False)
            target_labels, target_offsets = image_targets(image_boxes, labels[k], default_boxes)
            batch_images.append(image)
            batch_labels.append(target_labels)
            batch_offsets.append(target_offsets)
        cls_logits, loc_pred = model(torch.stack(batch_images))
        terms = ssd_loss_terms(cls_logits, loc_pred, torch.stack(batch_labels), torch.stack(batch_offsets))
        loss = terms["localisation"] + terms["confidence"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        history[step] = [terms["localisation"].item(), terms["confidence"].item()]
    return history


@torch.no_grad()
def detect(cls_logits: Tensor, loc_pred: Tensor, default_boxes: Tensor, score_threshold: float = 0.05,
           iou_threshold: float = 0.45, top_k: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """The detections of one image from its predictions: SSD's post-processing.

    cls_logits: float[D, C + 1]; loc_pred: float[D, 4]; default_boxes: float[D, 4] in image
    fractions. Softmax over the classes; every box decoded (:func:`decode_offsets`) and clipped to
    [0, 1]; then, for each object class c = 1..C, the boxes with score > score_threshold become
    candidates of class c (a box can be a candidate of several classes); class-wise NMS
    (torchvision.ops.batched_nms) at iou_threshold; the top_k best. Returns (boxes float[K, 4] in
    image fractions, scores float[K], labels int64[K] in 1..C), by decreasing score.
    """
    probabilities = cls_logits.softmax(dim=-1)[:, 1:]  # float[D, C]: the objects' classes
    decoded = decode_offsets(loc_pred, default_boxes).clamp(0, 1)
    box_index, class_index = torch.nonzero(probabilities > score_threshold, as_tuple=True)
    boxes, scores, labels = decoded[box_index], probabilities[box_index, class_index], class_index + 1
    keep = batched_nms(boxes, scores, labels, iou_threshold)[:top_k]
    return boxes[keep], scores[keep], labels[keep]


# ---------------------------------------------------------------------------------------------
# Mean average precision at IoU 0.5
# ---------------------------------------------------------------------------------------------

def mean_ap_50(predictions: list[dict], targets: list[dict], classes=(1, 2, 3),
               iou_threshold: float = 0.5) -> tuple[float, dict[int, float]]:
    """Mean average precision at IoU 0.5 over a data set: (mAP, {class: AP}).

    predictions: one dict per image with "boxes" float[K, 4], "scores" float[K], "labels"
    int64[K]; targets: one dict per image with "boxes" float[G, 4] and "labels" int64[G] (boxes
    in the same units). For each class: its detections over all images sorted by decreasing score
    (equal scores: image order, then detection order); each in turn is a true positive when the
    not yet matched ground truth of its class and image with which it has the largest IoU (ties:
    the later one, as COCOeval) has IoU >= iou_threshold, which is then matched; otherwise a false positive.
    AP is the all-point interpolated area under the precision-recall curve; the mean is over the
    classes that have ground truth (0.0 when none has).
    """
    per_class = {}
    for c in classes:
        ranking = rank_class(predictions, targets, c, iou_threshold, max_per_image=None)
        if ranking.truths:
            per_class[c] = pr_area(ranking, "voc")
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return mean, per_class


# ---------------------------------------------------------------------------------------------
# The explorer
# ---------------------------------------------------------------------------------------------

class DefaultBoxExplorer(Explorer):
    """A feature map, one of its cells and the cell's default boxes, over an image.

    image: float[3, H, W] (default: a synthetic scene of 300 x 300 pixels) and target: its
    objects, a dict with "boxes" float[G, 4] in pixels; config: the default boxes' settings, a
    dict like :data:`SSD300` (the default). Controls: "level" (the feature map k, 0-based),
    "row" and "column" (the cell, kept inside the chosen map).

    What is drawn, for tests: on the first axes the image, the map's grid (gid "grid"), the cell
    (Rectangle, gid "cell"), its centre (Line2D, gid "centre"), each object (Rectangle, gid
    "object-g") and the cell's default boxes (Rectangle, gid "default-i", i in the order of
    :func:`box_shapes`, in pixels), solid when their IoU with an object is >= 0.5, dashed
    otherwise. The second axes hold one text with gid "caption": the map, s_k, s'_k and each
    box's size in pixels and best IoU with an object.
    """

    def __init__(self, image: Tensor | None = None, target: dict | None = None, config: dict | None = None,
                 level: int = 2, row: int = 4, column: int = 6):
        if image is None:
            image, target = make_scene(seed=9, index=3, size=300)
        self.image = image.detach().cpu().float()
        self.objects = (target or {}).get("boxes", torch.zeros(0, 4)).detach().cpu().double().reshape(-1, 4)
        self.config = dict(SSD300 if config is None else config)
        self.config.setdefault("steps", None)
        self.config.setdefault("image_size", tuple(self.image.shape[-2:]))
        sizes = self.config["feature_map_sizes"]
        self.updating = False  # True while the row and column ranges follow a new level
        layout = widgets.Layout(width="230px")
        options = [(f"{k}: {r} x {c} map", k) for k, (r, c) in enumerate(sizes)]
        super().__init__({
            "level": widgets.Dropdown(options=options, value=level, description="map",
                                      layout=widgets.Layout(width="200px")),
            "row": widgets.IntSlider(value=min(row, sizes[level][0] - 1), min=0, max=sizes[level][0] - 1,
                                     description="row", continuous_update=False, layout=layout),
            "column": widgets.IntSlider(value=min(column, sizes[level][1] - 1), min=0, max=sizes[level][1] - 1,
                                        description="column", continuous_update=False, layout=layout),
        })

    def _changed(self, change: dict) -> None:
        if self.updating:
            return
        if change["owner"] is self.controls["level"]:
            # A new map has another number of cells: keep the cell inside it with one redraw.
            self.updating = True
            try:
                rows, columns = self.config["feature_map_sizes"][change["new"]]
                self.controls["row"].max, self.controls["column"].max = rows - 1, columns - 1
            finally:
                self.updating = False
        super()._changed(change)

    def cell_boxes(self, level: int, row: int, column: int) -> Tensor:
        """float64[k, 4]: the default boxes (x1, y1, x2, y2) of one cell, in pixels."""
        c = self.config
        sizes = c["feature_map_sizes"]
        every = make_default_boxes(sizes, c["scales"], c["aspect_ratios"], c["steps"], c["image_size"],
                                   dtype=torch.float64)
        counts = boxes_per_level(sizes, c["aspect_ratios"])
        k = 2 + 2 * len(c["aspect_ratios"][level])
        first = sum(counts[:level]) + (row * sizes[level][1] + column) * k
        height, width = self.image.shape[-2:]
        return every[first:first + k] * torch.tensor([width, height, width, height], dtype=torch.float64)

    def draw(self, level: int, row: int, column: int) -> Figure:
        c = self.config
        rows, columns = c["feature_map_sizes"][level]
        row, column = min(row, rows - 1), min(column, columns - 1)
        height, width = self.image.shape[-2:]
        # a cell's size in pixels: the step when given, else the image divided by the map
        cell_w = c["steps"][level] * width / c["image_size"][1] if c["steps"] else width / columns
        cell_h = c["steps"][level] * height / c["image_size"][0] if c["steps"] else height / rows
        boxes = self.cell_boxes(level, row, column)
        overlap = box_iou(boxes, self.objects).max(dim=1).values if len(self.objects) else torch.zeros(len(boxes))

        figure = Figure(figsize=(11, 5.6), layout="constrained")
        ax, text_ax = figure.subplots(1, 2, width_ratios=[1.25, 1])
        show_image(self.image, ax)
        segments_x = [t * cell_w for t in range(columns + 1)]
        segments_y = [t * cell_h for t in range(rows + 1)]
        grid = ax.vlines(segments_x, 0, rows * cell_h, colors="white", linewidths=0.5, alpha=0.6)
        grid.set_gid("grid")
        ax.hlines(segments_y, 0, columns * cell_w, colors="white", linewidths=0.5, alpha=0.6)
        for g, (x1, y1, x2, y2) in enumerate(self.objects.tolist()):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5,
                                   linestyle=":", gid=f"object-{g}"))
        ax.add_patch(Rectangle((column * cell_w, row * cell_h), cell_w, cell_h, facecolor="yellow", alpha=0.7,
                               edgecolor="black", linewidth=1, gid="cell"))
        centre = ((column + 0.5) * cell_w, (row + 0.5) * cell_h)
        ax.plot(*centre, marker="o", color="black", markerfacecolor="white", markersize=5, gid="centre")
        for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            positive = bool(overlap[i] >= 0.5)
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=PALETTE[i % len(PALETTE)],
                                   linewidth=2.5 if positive else 1.8, linestyle="-" if positive else "--",
                                   path_effects=OUTLINE, gid=f"default-{i}"))
        margin = 0.03 * max(height, width)
        ax.set_xlim(min(boxes[:, 0].min().item(), 0) - margin, max(boxes[:, 2].max().item(), width) + margin)
        ax.set_ylim(max(boxes[:, 3].max().item(), height) + margin, min(boxes[:, 1].min().item(), 0) - margin)
        ax.add_patch(Rectangle((0, 0), width, height, fill=False, edgecolor="black", linewidth=1))
        ax.set_title(f"map {level}: {rows} x {columns} cells, cell ({row}, {column}) and its {len(boxes)} "
                     "default boxes", fontsize=10)
        text_ax.axis("off")
        text_ax.text(0.0, 1.0, self.caption(level, row, column, boxes, overlap), family="monospace", fontsize=9,
                     va="top", ha="left", transform=text_ax.transAxes, gid="caption")
        handles = [Line2D([], [], color="#888888", linewidth=2.5, label="IoU >= 0.5 with an object: positive"),
                   Line2D([], [], color="#888888", linewidth=1.8, linestyle="--", label="IoU < 0.5"),
                   Line2D([], [], color="#555555", linewidth=1.5, linestyle=":", label="object (dotted, white)")]
        text_ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
        return figure

    def caption(self, level: int, row: int, column: int, boxes: Tensor, overlap: Tensor) -> str:
        """The explorer's text: the map's scales and boxes, and each default box with its best IoU."""
        c = self.config
        rows, columns = c["feature_map_sizes"][level]
        scale, next_scale = c["scales"][level], c["scales"][level + 1]
        counts = boxes_per_level(c["feature_map_sizes"], c["aspect_ratios"])
        height, width = self.image.shape[-2:]
        lines = [f"map {level}: {rows} x {columns} cells x {len(boxes)} boxes = {counts[level]} boxes",
                 f"(all maps: {sum(counts)})",
                 f"s_k = {scale:.3f}, s'_k = sqrt(s_k s_k+1) = {math.sqrt(scale * next_scale):.3f}",
                 f"centre ({(boxes[0, 0] + boxes[0, 2]).item() / 2:.1f}, {(boxes[0, 1] + boxes[0, 3]).item() / 2:.1f})"
                 " pixels", "",
                 "  i  shape         w (px)  h (px)  best IoU"]
        shapes = box_shapes(scale, next_scale, c["aspect_ratios"][level])
        for i, ((x1, y1, x2, y2), (_, _, name)) in enumerate(zip(boxes.tolist(), shapes)):
            mark = "  +" if overlap[i] >= 0.5 else ""
            lines.append(f"{i:3d}  {name:<12} {x2 - x1:7.1f} {y2 - y1:7.1f}  {float(overlap[i]):8.2f}{mark}")
        lines += ["", f"+ IoU >= 0.5: {int((overlap >= 0.5).sum())} of {len(boxes)} would be positives",
                  f"(image {width} x {height} pixels)"]
        return "\n".join(lines)
