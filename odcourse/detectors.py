"""Chapter 10 (using and measuring detectors): the model zoo, a detector with torchvision's
interface that needs no download, the slides' wrappers and form, and the figures of mAP.

What this module offers:

- :data:`TORCHVISION_ZOO`, :func:`zoo_table`, :data:`TF_ZOO_2018`, :func:`time_forward`: the
  model-zoo trade-off, from the metadata torchvision installs with its weight enums (nothing is
  downloaded) and from the slides' table, with speeds measured on the reader's runtime;
- :class:`ShapesDetector`: chapter 9's small SSD behind torchvision's detection interface, and
  :class:`ColourMasks`, which adds a (not learned) instance mask to each of its boxes;
- :func:`load_image`, :func:`run_inference_for_single_image`, :func:`draw_detections`,
  :func:`detect`: the slides' wrappers, with torchvision.utils' drawing functions;
- :class:`DetectionPanel`: the slides' form (image, score threshold, figure size) as an explorer;
- :class:`Ranking`, :func:`rank_class`, :func:`pr_area` (from :mod:`odcourse.ranking`, shared with
  chapter 9's mAP@0.5), :func:`coco_style_ap`,
  :func:`cocoeval_summary`: precision, recall and AP for the page's figures, and pycocotools'
  COCOeval on the same data when it is installed;
- :class:`PRExplorer`: the IoU threshold and the score cut-off on one image and on the
  precision-recall curve.

Conventions: images are float[3, H, W] in [0, 1]; boxes (x1, y1, x2, y2) in the pixels of the
image they belong to; labels index a list of category names whose entry 0 is the background
(torchvision's ``weights.meta["categories"]`` and :data:`odcourse.data.CLASSES` both are).
The functions of assignment a10 are not here, and no graded function may use this module.
"""
from __future__ import annotations

import contextlib
import io
import math
import time

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from .draw import PALETTE, show_image
from .ranking import (
    COCO_IOU_THRESHOLDS,
    COCO_RECALL_LEVELS,
    Ranking,
    pr_area,
    precision_envelope,
    rank_class,
)
from .ssd import detect as ssd_detect
from .ssd import make_default_boxes, paper_scales
from .widgets import Explorer

# ---------------------------------------------------------------------------------------------
# The model zoo
# ---------------------------------------------------------------------------------------------

#: torchvision's detection models trained on COCO, by family.
TORCHVISION_ZOO = (
    "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2",
    "ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "fcos_resnet50_fpn", "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
)

#: The slides' table (TensorFlow's detection model zoo, 2018): (model, speed in ms, COCO mAP or
#: None where the table gives none). The zoo's own timings, on its authors' GPU.
TF_ZOO_2018 = (
    ("ssd_mobilenet_v1_coco", 30, 21), ("ssd_mobilenet_v2_coco", 31, 22),
    ("ssdlite_mobilenet_v2_coco", 27, 22), ("ssd_inception_v2_coco", 42, 24),
    ("faster_rcnn_inception_v2_coco", 58, 28), ("faster_rcnn_resnet50_coco", 89, 30),
    ("faster_rcnn_resnet50_lowproposals_coco", 64, None), ("rfcn_resnet101_coco", 92, 30),
    ("faster_rcnn_resnet101_coco", 106, 32), ("faster_rcnn_resnet101_lowproposals_coco", 82, None),
    ("faster_rcnn_inception_resnet_v2_atrous_coco", 620, 37),
    ("faster_rcnn_inception_resnet_v2_atrous_lowproposals_coco", 241, None), ("faster_rcnn_nas", 1833, 43),
)


def zoo_table(names=TORCHVISION_ZOO) -> list[dict]:
    """torchvision's published figures for each model's default COCO weights, one dict per model.

    Keys: "model", "weights" (the enum member's name), "box_map" and "mask_map" (COCO val2017,
    in %, None when absent), "params" (millions), "gflops" (per image, torchvision's count),
    "file_mb" (the weights file) and "url". Read from ``get_model_weights(name).DEFAULT.meta``,
    which torchvision installs: nothing is downloaded.
    """
    from torchvision.models import get_model_weights

    rows = []
    for name in names:
        weights = get_model_weights(name).DEFAULT
        meta = weights.meta
        metrics = meta["_metrics"]["COCO-val2017"]
        rows.append({"model": name, "weights": f"{type(weights).__name__}.{weights.name}",
                     "box_map": metrics.get("box_map"), "mask_map": metrics.get("mask_map"),
                     "params": meta["num_params"] / 1e6, "gflops": meta["_ops"], "file_mb": meta.get("_file_size"),
                     "url": weights.url})
    return rows


def time_forward(name: str, device: str | torch.device = "cpu", size: int = 320, repeats: int = 5,
                 budget: float = 1.0) -> float:
    """Milliseconds of one forward pass (eval mode) of torchvision's `name` on a size x size image.

    The model is built with weights=None and weights_backbone=None: random weights, nothing is
    downloaded. The network costs the same as with trained weights, but random class scores
    would pass the final score threshold in numbers a trained model never produces (SSD keeps
    every box scored above 0.001 or 0.01), so the threshold is raised to 1.0: the time is that
    of the network, with the proposals of two-stage models, but not of the final filtering and
    NMS. One untimed call first (warm-up), then the best of up to `repeats` timed calls, fewer
    once `budget` seconds have been spent. Each model resizes the image as it would for real (the
    R-CNNs, RetinaNet and FCOS to a short side of 800 pixels unless their name says 320).
    """
    from torchvision.models import get_model

    from .data import make_scene

    device = torch.device(device)
    final_threshold = {"box_score_thresh": 1.0} if "rcnn" in name else {"score_thresh": 1.0}
    model = get_model(name, weights=None, weights_backbone=None, **final_threshold).eval().to(device)
    image = make_scene(seed=10, index=0, size=size)[0].to(device)

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: list[float] = []
    with torch.inference_mode():
        model([image])
        while len(times) < max(repeats, 1) and (not times or sum(times) < budget):
            synchronise()
            start = time.perf_counter()
            model([image])
            synchronise()
            times.append(time.perf_counter() - start)
    return 1000 * min(times)


# ---------------------------------------------------------------------------------------------
# A detector that needs no download: chapter 9's small SSD
# ---------------------------------------------------------------------------------------------

#: The default boxes of chapter 9's small SSD (96 x 96 images): three maps, 846 boxes.
SHAPES_SSD = {"feature_map_sizes": [(12, 12), (6, 6), (3, 3)], "scales": paper_scales(3, 0.15, 0.45),
              "aspect_ratios": [[2], [2, 3], [2, 3]]}


class ShapesDetector(nn.Module):
    """A trained :class:`odcourse.ssd.TinySSD` with the interface of torchvision's detectors.

    ``detector(images)`` with images a list of float[3, H, W] in [0, 1] (any sizes) returns one
    dict per image: "boxes" float[K, 4] (x1, y1, x2, y2) in that image's pixels, "scores"
    float[K] by decreasing score, "labels" int64[K] in 1..3 (:data:`odcourse.data.CLASSES`).
    Like torchvision's ``GeneralizedRCNNTransform``, each image is resized (bilinear, corners not
    aligned) to the network's size and the boxes are scaled back; then SSD's post-processing
    (:func:`odcourse.ssd.detect`). The detector is built in eval mode; it only detects (train the
    network with :func:`odcourse.ssd.train_ssd`).
    """

    def __init__(self, network: nn.Module, config: dict = SHAPES_SSD, size: int = 96, score_threshold: float = 0.05,
                 nms_threshold: float = 0.45, detections_per_image: int = 100):
        super().__init__()
        self.network, self.size = network, size
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.detections_per_image = detections_per_image
        self.register_buffer("default_boxes", make_default_boxes(**config), persistent=False)
        self.eval()

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        if self.training:
            raise RuntimeError("ShapesDetector only detects: call .eval() (train its network with "
                               "odcourse.ssd.train_ssd)")
        if len(images) == 0:
            return []
        batch = torch.cat([F.interpolate(image[None].float(), size=(self.size, self.size), mode="bilinear",
                                         align_corners=False) for image in images])
        cls_logits, loc_pred = self.network(batch.to(self.default_boxes.device))
        results = []
        for image, logits, offsets in zip(images, cls_logits, loc_pred):
            boxes, scores, labels = ssd_detect(logits, offsets, self.default_boxes, self.score_threshold,
                                               self.nms_threshold, self.detections_per_image)
            height, width = image.shape[-2:]
            results.append({"boxes": boxes * boxes.new_tensor([width, height, width, height]), "scores": scores,
                            "labels": labels})
        return results


class ColourMasks(nn.Module):
    """A box detector plus a mask per box, made by a colour threshold (nothing learned).

    Returns the detector's dicts with "masks" added: float[K, 1, H, W] of 0 and 1, the format of
    torchvision's Mask R-CNN. A pixel inside a box is in the mask when one of its channels differs
    by more than `threshold` from the median colour of a ring `margin` pixels wide around the box:
    a stand-in for Mask R-CNN's mask head that works on the synthetic shapes' flat colours and
    cannot tell two overlapping shapes apart.
    """

    def __init__(self, detector: nn.Module, threshold: float = 0.2, margin: int = 2):
        super().__init__()
        self.detector, self.threshold, self.margin = detector, threshold, margin
        self.eval()

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        results = self.detector(images)
        for image, result in zip(images, results):
            result["masks"] = self.masks(image, result["boxes"])
        return results

    def masks(self, image: Tensor, boxes: Tensor) -> Tensor:
        """float[K, 1, H, W]: the colour mask inside each box of one image."""
        height, width = image.shape[-2:]
        masks = torch.zeros(len(boxes), 1, height, width, device=image.device)
        for k, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
            if x2 <= x1 or y2 <= y1:
                continue
            a, b = max(x1 - self.margin, 0), max(y1 - self.margin, 0)
            c, d = min(x2 + self.margin, width), min(y2 + self.margin, height)
            ring = torch.ones(d - b, c - a, dtype=torch.bool, device=image.device)
            ring[y1 - b:y2 - b, x1 - a:x2 - a] = False
            around = image[:, b:d, a:c][:, ring]  # float[3, pixels of the ring]
            if around.shape[1] == 0:  # the box is the whole image: no ring to compare with
                continue
            background = around.median(dim=1).values
            inside = (image[:, y1:y2, x1:x2] - background[:, None, None]).abs().amax(dim=0) > self.threshold
            masks[k, 0, y1:y2, x1:x2] = inside.float()
        return masks


def mask_iou(masks: Tensor, others: Tensor) -> Tensor:
    """float[K, M]: the IoU of every mask (bool or 0/1, [K, H, W] or [K, 1, H, W]) with every other."""
    a = masks.flatten(1).bool().double()
    b = others.flatten(1).bool().double()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


# ---------------------------------------------------------------------------------------------
# The slides' wrappers
# ---------------------------------------------------------------------------------------------

def load_image(source) -> Tensor:
    """An image as float[3, H, W] in [0, 1], from a URL (http or https), a file path or a tensor.

    A URL is fetched with `requests` (preinstalled in Colab); a file is read with PIL; a tensor
    float[3, H, W] in [0, 1] or uint8 is returned as float. Greyscale and alpha become RGB.
    """
    if isinstance(source, Tensor):
        return source.float() / 255 if source.dtype == torch.uint8 else source.float()
    from PIL import Image

    source = str(source)
    if source.startswith(("http://", "https://")):
        import requests

        response = requests.get(source, timeout=30, headers={"User-Agent": "odcourse (course notebook)"})
        response.raise_for_status()
        picture = Image.open(io.BytesIO(response.content))
    else:
        picture = Image.open(source)
    array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def run_inference_for_single_image(model: nn.Module, image: Tensor) -> dict[str, Tensor]:
    """One image through a torchvision-style detector, in eval mode: its dict of outputs, on the CPU.

    image: float[3, H, W] in [0, 1]; it is moved to the model's device. The outputs are those of
    the model: "boxes" float[K, 4] in the image's pixels, "scores", "labels", and "masks"
    float[K, 1, H, W] for Mask R-CNN.
    """
    model.eval()
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with torch.inference_mode():
        output = model([image.to(device)])[0]
    return {key: value.cpu() for key, value in output.items()}


def colours_for(labels) -> list[str]:
    """A colour per label (the course's palette, by label number)."""
    return [PALETTE[int(label) % len(PALETTE)] for label in labels]


def render_detections(image: Tensor, output: dict[str, Tensor], categories, score_threshold: float = 0.5,
                      min_side: int = 400) -> tuple[Tensor, dict[str, Tensor]]:
    """The image with the detections scored >= score_threshold drawn in: (uint8[3, H', W'], kept).

    Masks (when the output has "masks", kept where > 0.5) with torchvision's
    ``draw_segmentation_masks``, then boxes captioned "name score" with ``draw_bounding_boxes``.
    An image whose shorter side is below `min_side` pixels is first enlarged by a whole factor
    (nearest neighbour, boxes scaled alike) so that captions stay readable. `kept` is the output
    restricted to the drawn detections, in the original image's pixels.
    """
    keep = output["scores"] >= score_threshold
    kept = {key: value[keep] for key, value in output.items()}
    factor = max(1, math.ceil(min_side / min(image.shape[-2:])))
    canvas = (load_image(image).clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if factor > 1:
        canvas = canvas.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    colours = colours_for(kept["labels"])
    if "masks" in kept and len(kept["masks"]):
        masks = kept["masks"][:, 0] > 0.5
        if factor > 1:
            masks = masks.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
        canvas = draw_segmentation_masks(canvas, masks, alpha=0.45, colors=colours)
    if len(kept["boxes"]):
        captions = [f"{categories[int(label)]} {float(score):.2f}"
                    for label, score in zip(kept["labels"], kept["scores"])]
        from matplotlib import font_manager

        canvas = draw_bounding_boxes(canvas, kept["boxes"].float() * factor, labels=captions, colors=colours,
                                     width=max(2, factor), font=font_manager.findfont("DejaVu Sans"),
                                     font_size=max(12, round(min(canvas.shape[-2:]) / 32)), label_colors="white",
                                     fill_labels=True)
    return canvas, kept


def draw_detections(image: Tensor, output: dict[str, Tensor], categories, score_threshold: float = 0.5,
                    ax: Axes | None = None) -> dict[str, Tensor]:
    """Show :func:`render_detections` on `ax` (the image artist has gid "detections"); return the kept output."""
    canvas, kept = render_detections(image, output, categories, score_threshold)
    ax = show_image(canvas, ax)
    ax.images[-1].set_gid("detections")
    count = len(kept["scores"])
    ax.set_title(f"{count} detection{'' if count == 1 else 's'} with score >= {score_threshold:.2f} "
                 f"(of {len(output['scores'])} returned)", fontsize=10)
    return kept


def detect(model: nn.Module, image, categories, score_threshold: float = 0.5, figsize=(8, 8),
           ax: Axes | None = None) -> dict[str, Tensor]:
    """The slides' ``detect``: load the image (URL, path or tensor), run the model, draw the result.

    Draws on `ax`, or on a new pyplot figure of `figsize` inches; returns the detections drawn
    (those scored >= score_threshold).
    """
    picture = load_image(image)
    output = run_inference_for_single_image(model, picture)
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.figure(figsize=figsize).subplots()
    return draw_detections(picture, output, categories, score_threshold, ax)


class DetectionPanel(Explorer):
    """The slides' form: an image, a score threshold and a figure size; the detections drawn.

    model: a torchvision-style detector; categories: names by label; images: {name: URL, path or
    tensor} offered in a list. Controls: "image" (a name of `images`), "url" (a URL or a file path
    that, when not empty, replaces the chosen image), "score_threshold" and "size" (the figure's
    side in inches, at least 5 as in the slides). The model runs once per image; moving the
    threshold only redraws.

    What is drawn, for tests: one axes whose image artist (gid "detections") is
    :func:`render_detections` of the image; ``panel.shown`` holds the detections drawn; when an
    image cannot be loaded the axes show the error (a text with gid "error") instead.
    """

    def __init__(self, model: nn.Module, categories, images: dict, score_threshold: float = 0.5, size: int = 8,
                 image: str | None = None):
        self.model, self.categories, self.images = model, list(categories), dict(images)
        self.cache: dict = {}
        self.shown: dict[str, Tensor] | None = None
        super().__init__({
            "image": widgets.Dropdown(options=list(self.images), value=image or next(iter(self.images)),
                                      description="image"),
            "url": widgets.Text(value="", placeholder="or an image URL or file path, then Enter",
                                description="URL", continuous_update=False, layout=widgets.Layout(width="360px")),
            "score_threshold": widgets.FloatSlider(value=score_threshold, min=0.0, max=1.0, step=0.05,
                                                   description="score >=", continuous_update=False),
            "size": widgets.IntSlider(value=max(size, 5), min=5, max=20, description="size",
                                      continuous_update=False),
        })

    def detections(self, source) -> tuple[Tensor, dict[str, Tensor]]:
        """(image, the model's output) for a URL, path or tensor, computed once per source."""
        key = source if isinstance(source, str) else id(source)
        if key not in self.cache:
            picture = load_image(source)
            self.cache[key] = (picture, run_inference_for_single_image(self.model, picture))
        return self.cache[key]

    def draw(self, image: str, url: str, score_threshold: float, size: int) -> Figure:
        figure = Figure(figsize=(size, size), layout="constrained")
        ax = figure.subplots()
        source = url.strip() or self.images[image]
        try:
            picture, output = self.detections(source)
        except Exception as error:  # noqa: BLE001 - a bad URL or file: say so in the figure, keep the panel alive
            self.shown = None
            ax.axis("off")
            ax.text(0.5, 0.5, f"could not load {source!r}:\n{type(error).__name__}: {error}", ha="center",
                    va="center", wrap=True, gid="error")
            return figure
        self.shown = draw_detections(picture, output, self.categories, score_threshold, ax)
        return figure


# ---------------------------------------------------------------------------------------------
# Precision, recall and AP for the page's figures
# ---------------------------------------------------------------------------------------------

def coco_style_ap(predictions: list[dict], targets: list[dict], labels=None, iou_thresholds=COCO_IOU_THRESHOLDS,
                  rule: str = "coco", max_per_image: int = 100) -> dict:
    """AP of every class at every IoU threshold, and the means COCO reports.

    labels: the classes (default: every label of the targets). Returns {"labels": list,
    "iou_thresholds": float64[T], "ap": float64[T, K] (NaN for a class without objects),
    "map": the mean over thresholds and classes, "map_50" and "map_75": the mean over classes at
    0.5 and 0.75 (NaN when not among the thresholds)}. Means skip classes without objects.
    """
    if labels is None:
        labels = sorted({int(v) for target in targets for v in target["labels"].tolist()})
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    ap = np.full((len(thresholds), len(labels)), np.nan)
    for t, threshold in enumerate(thresholds):
        for k, label in enumerate(labels):
            ap[t, k] = pr_area(rank_class(predictions, targets, label, float(threshold), max_per_image), rule)

    def mean_at(value: float) -> float:
        rows = np.nonzero(np.isclose(thresholds, value))[0]
        return _nanmean(ap[rows[0]]) if len(rows) else math.nan

    return {"labels": list(labels), "iou_thresholds": thresholds, "ap": ap, "map": _nanmean(ap),
            "map_50": mean_at(0.5), "map_75": mean_at(0.75)}


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def cocoeval_summary(predictions: list[dict], targets: list[dict]) -> dict | None:
    """pycocotools' COCOeval (bbox) on the same data, or None when pycocotools is not installed.

    Returns {"map", "map_50", "map_75"} (COCOeval's first three statistics), "labels" and "ap":
    float64[10, K], the AP of each class at each IoU threshold (NaN without objects). Boxes
    are given to COCO as (x, y, w, h); COCOeval's printed summary is swallowed.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return None
    labels = sorted({int(v) for target in targets for v in target["labels"].tolist()})

    def xywh(box) -> list[float]:
        x1, y1, x2, y2 = (float(v) for v in box)
        return [x1, y1, x2 - x1, y2 - y1]

    annotations, results = [], []
    for n, (prediction, target) in enumerate(zip(predictions, targets)):
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            x, y, w, h = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": n + 1, "category_id": int(label),
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        for box, score, label in zip(prediction["boxes"].tolist(), prediction["scores"].tolist(),
                                     prediction["labels"].tolist()):
            results.append({"image_id": n + 1, "category_id": int(label), "bbox": xywh(box), "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": [{"id": n + 1} for n in range(len(targets))], "annotations": annotations,
                         "categories": [{"id": label} for label in labels]}
        truth.createIndex()
        if not results:
            return {"map": 0.0, "map_50": 0.0, "map_75": 0.0, "labels": labels, "ap": np.zeros((10, len(labels)))}
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # [T, R, K], area "all", 100 detections
    ap = np.where((precision > -1).any(axis=1), np.where(precision > -1, precision, 0).mean(axis=1), np.nan)
    stats = evaluation.stats
    return {"map": float(stats[0]), "map_50": float(stats[1]), "map_75": float(stats[2]), "labels": labels, "ap": ap}


# ---------------------------------------------------------------------------------------------
# The precision-recall explorer
# ---------------------------------------------------------------------------------------------

class PRExplorer(Explorer):
    """One class's detections on one image, and the class's precision-recall curve on the data set.

    images: the data set's images (float[3, H, W]); predictions, targets: one dict per image (as
    for :func:`rank_class`); categories: names by label. Controls: "label" (the class),
    "iou_threshold" (the IoU a detection needs to count as a hit), "score" (the cut-off: the
    detections scored >= it are the detector's answer, a point on the curve) and "image".

    What is drawn, for tests: on the first axes the image, each object of the class (Rectangle,
    gid "truth-g", dotted white) and each of its detections scored >= the cut-off (Rectangle, gid
    "hit-k" solid green or "miss-k" dashed red, k its position in the image's prediction); on
    the second axes the precision-recall curve (Line2D, gid "pr-curve"), its envelope (gid
    "envelope") and the cut-off's point (gid "operating-point", absent when no detection is
    above it); the second axes' title gives both APs: "AP: VOC x.xxx, COCO x.xxx".
    """

    def __init__(self, images, predictions: list[dict], targets: list[dict], categories, label: int = 1,
                 iou_threshold: float = 0.5, score: float = 0.5, image: int = 0):
        self.images, self.predictions, self.targets = list(images), predictions, targets
        self.categories = list(categories)
        self.rankings: dict = {}
        labels = sorted({int(v) for target in targets for v in target["labels"].tolist()})
        super().__init__({
            "label": widgets.Dropdown(options=[(self.categories[v], v) for v in labels], value=label,
                                      description="class", layout=widgets.Layout(width="200px")),
            "iou_threshold": widgets.FloatSlider(value=iou_threshold, min=0.05, max=0.95, step=0.05,
                                                 description="IoU >=", continuous_update=False),
            "score": widgets.FloatSlider(value=score, min=0.05, max=1.0, step=0.05, description="score >=",
                                         continuous_update=False),
            "image": widgets.IntSlider(value=image, min=0, max=len(self.images) - 1, description="image",
                                       continuous_update=False),
        })

    def ranking(self, label: int, iou_threshold: float) -> Ranking:
        """:func:`rank_class` for these values, computed once."""
        key = (label, round(iou_threshold, 6))
        if key not in self.rankings:
            self.rankings[key] = rank_class(self.predictions, self.targets, label, iou_threshold)
        return self.rankings[key]

    def draw(self, label: int, iou_threshold: float, score: float, image: int) -> Figure:
        ranking = self.ranking(label, iou_threshold)
        recall, precision = ranking.recall, ranking.precision
        name = self.categories[label]
        figure = Figure(figsize=(11, 5.2), layout="constrained")
        ax, curve_ax = figure.subplots(1, 2)

        show_image(self.images[image], ax)
        target = self.targets[image]
        for g, (x1, y1, x2, y2) in enumerate(target["boxes"][target["labels"] == label].tolist()):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5,
                                   linestyle=":", gid=f"truth-{g}"))
        boxes = self.predictions[image]["boxes"]
        here = np.nonzero((ranking.image == image) & (ranking.scores >= score))[0]
        hits = 0
        for r in here:
            k, hit = int(ranking.detection[r]), bool(ranking.hit[r])
            hits += hit
            x1, y1, x2, y2 = boxes[k].tolist()
            colour = "#3cb44b" if hit else "#e6194b"
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2,
                                   linestyle="-" if hit else "--", gid=f"{'hit' if hit else 'miss'}-{k}"))
            ax.text(x1, y1, f"{ranking.scores[r]:.2f} IoU {ranking.overlap[r]:.2f}", color="white", fontsize=7,
                    va="bottom", bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.85})
        ax.set_title(f"image {image}, {name}s: hits (green) {hits}, false (red) {len(here) - hits}\n"
                     f"among the detections scored >= {score:.2f}, at IoU >= {iou_threshold:.2f}", fontsize=10)

        curve_ax.plot(recall, precision, color="#4363d8", linewidth=1, label="precision", gid="pr-curve")
        curve_ax.plot(recall, precision_envelope(precision), color="#f58231", linewidth=2,
                      drawstyle="steps-pre", label="interpolated (envelope)", gid="envelope")
        chosen = int((ranking.scores >= score).sum())
        if chosen:
            curve_ax.plot(recall[chosen - 1], precision[chosen - 1], "o", color="black", markersize=8,
                          gid="operating-point", label=f"score >= {score:.2f}: recall {recall[chosen - 1]:.2f}, "
                                                       f"precision {precision[chosen - 1]:.2f}")
        curve_ax.set_xlim(0, 1.02)
        curve_ax.set_ylim(0, 1.05)
        curve_ax.set_xlabel("recall")
        curve_ax.set_ylabel("precision")
        curve_ax.legend(loc="lower left", fontsize=8)
        curve_ax.set_title(f"{name}: {len(ranking.scores)} detections, {ranking.truths} objects, IoU >= "
                           f"{iou_threshold:.2f}\nAP: VOC {pr_area(ranking, 'voc'):.3f}, COCO "
                           f"{pr_area(ranking, 'coco'):.3f}", fontsize=10)
        curve_ax.grid(alpha=0.3)
        return figure


def draw_interpolations(ranking: Ranking, ax: Axes) -> None:
    """A ranking's precision-recall curve with VOC's all-point area (shaded) and COCO's 101 readings."""
    recall, precision = ranking.recall, ranking.precision
    envelope = precision_envelope(precision)
    steps_x = np.concatenate([[0.0], np.repeat(recall, 2)])
    steps_y = np.concatenate([np.repeat(envelope, 2), [0.0]])
    ax.fill_between(steps_x, steps_y, color="#f58231", alpha=0.25, linewidth=0,
                    label=f"VOC (all points): area {pr_area(ranking, 'voc'):.4f}")
    ax.plot(steps_x, steps_y, color="#f58231", linewidth=1.5, gid="envelope", label="interpolated precision")
    ax.plot(recall, precision, color="#4363d8", linewidth=1, label="precision at each rank", gid="pr-curve")
    where = np.searchsorted(recall, COCO_RECALL_LEVELS, side="left")
    readings = np.where(where < len(recall), envelope[np.minimum(where, len(recall) - 1)], 0.0)
    ax.plot(COCO_RECALL_LEVELS, readings, ".", color="black", markersize=3.5, gid="coco-readings",
            label=f"COCO (101 readings): mean {pr_area(ranking, 'coco'):.4f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
