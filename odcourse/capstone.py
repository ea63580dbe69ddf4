"""Chapter 11 (the capstone): what a two-stage detector does with one image, stage by stage.

The page assembles Faster R-CNN and Mask R-CNN from torchvision's parts; assignment a11 has you
assemble the same detector from your own. This module only looks inside such a detector:

- :func:`stages`: for one image, the anchors and their objectness, the proposals that survive
  the RPN's NMS (with their scores) and the final detections, computed with the model's own
  modules and methods, as ``GeneralizedRCNN.forward`` computes them in evaluation mode;
- :class:`ProposalExplorer`: the three stages on a held-out image, with a slider each: the
  anchors above an objectness threshold, the top-n proposals, the detections above a score.

Works with any torchvision ``GeneralizedRCNN`` (``FasterRCNN``, ``MaskRCNN``) whose backbone
returns one feature map or an ordered dict of them. Coordinates are pixels of the input image
(pixel edges at whole numbers, as in :mod:`odcourse.draw`), also when the model's transform
resizes the image.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import ipywidgets as widgets
import torch
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn
from torchvision.models.detection.rpn import concat_box_prediction_layers

from .draw import PALETTE, show_image
from .widgets import Explorer


@dataclass
class Stages:
    """What a two-stage detector computes for one image, in the image's pixels.

    anchors float[A, 4] and objectness float[A] (the sigmoid of each anchor's logit), in the
    anchors' order (feature level by level, location by location, then anchor by anchor);
    proposals float[P, 4] and proposal_scores float[P]: the RPN's proposals after its NMS, best
    first; detections: the model's output dict for the image ("boxes", "scores", "labels", and
    "masks" for Mask R-CNN).
    """

    anchors: Tensor
    objectness: Tensor
    proposals: Tensor
    proposal_scores: Tensor
    detections: dict[str, Tensor]


def _to_input_pixels(boxes: Tensor, resized: tuple[int, int], original: tuple[int, int]) -> Tensor:
    """Boxes of the transformed (resized) image scaled to the pixels of the input image."""
    scale_y, scale_x = original[0] / resized[0], original[1] / resized[1]
    return boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])


@torch.no_grad()
def stages(model: nn.Module, image: Tensor) -> Stages:
    """The anchors, proposals and detections of `model` for one image float[3, H, W] in [0, 1].

    The model is put in evaluation mode and each step uses the model's own modules (transform,
    backbone, ``rpn.head``, ``rpn.anchor_generator``, ``rpn.box_coder``, ``rpn.filter_proposals``,
    ``roi_heads``, ``transform.postprocess``), so the detections are those of ``model([image])``.
    """
    model.eval()
    device = next(model.parameters()).device
    image = image.to(device)
    original = tuple(image.shape[-2:])
    batch, _ = model.transform([image])
    features = model.backbone(batch.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    maps = list(features.values())
    logits, deltas = model.rpn.head(maps)
    anchors = model.rpn.anchor_generator(batch, maps)
    per_level = [level[0].numel() for level in logits]
    flat_logits, flat_deltas = concat_box_prediction_layers(logits, deltas)
    decoded = model.rpn.box_coder.decode(flat_deltas, anchors).view(1, -1, 4)
    boxes, scores = model.rpn.filter_proposals(decoded, flat_logits, batch.image_sizes, per_level)
    found, _ = model.roi_heads(features, boxes, batch.image_sizes)
    detections = model.transform.postprocess(found, batch.image_sizes, [original])[0]
    resized = tuple(batch.image_sizes[0])
    return Stages(anchors=_to_input_pixels(anchors[0], resized, original).cpu(),
                  objectness=flat_logits.reshape(-1).sigmoid().cpu(),
                  proposals=_to_input_pixels(boxes[0], resized, original).cpu(), proposal_scores=scores[0].cpu(),
                  detections={key: value.cpu() for key, value in detections.items()})


def _draw_truth(ax: Axes, target: dict | None) -> None:
    """The true boxes, dotted white, gid "truth-g"."""
    if target is None:
        return
    for g, (x1, y1, x2, y2) in enumerate(target["boxes"].tolist()):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5,
                               linestyle=":", gid=f"truth-{g}"))


class ProposalExplorer(Explorer):
    """The stages of a two-stage detector on one image: anchors, proposals, detections.

    model: a torchvision ``FasterRCNN`` or ``MaskRCNN``; images: float[3, H, W] tensors; targets
    (optional): their annotations ("boxes"), drawn dotted white; categories: class names by
    label. Controls: "image" (which image), "objectness" (the anchors whose objectness, the
    sigmoid of the RPN's logit, is >= it), "top_n" (the n best proposals after the RPN's NMS) and
    "score" (the detections scored >= it). The model runs once per image; the sliders only
    redraw.

    What is drawn, for tests: three axes, each showing the image and the true boxes (Rectangles
    with gid "truth-g"). First axes: the chosen anchors, one PolyCollection with gid "anchors"
    (one rectangle per anchor, in the anchors' order); second: the proposals, Rectangles with gid
    "proposal-i", i their rank; third: the detections, Rectangles with gid "detection-k", k
    their position in the model's output. Each title gives the counts.
    """

    def __init__(self, model: nn.Module, images, targets=None, categories=None, image: int = 0,
                 objectness: float = 0.5, top_n: int = 10, score: float = 0.5):
        self.model, self.images = model, list(images)
        if not self.images:
            raise ValueError("ProposalExplorer needs at least one image")
        self.targets = None if targets is None else list(targets)
        self.categories = list(categories) if categories is not None else None
        self.cache: dict[int, Stages] = {}
        most = max(int(model.rpn._post_nms_top_n["testing"]), 1)
        super().__init__({
            "image": widgets.IntSlider(value=image, min=0, max=len(self.images) - 1, description="image",
                                       continuous_update=False),
            "objectness": widgets.FloatSlider(value=objectness, min=0.05, max=0.95, step=0.05,
                                              description="objectness >=", continuous_update=False,
                                              style={"description_width": "initial"}),
            "top_n": widgets.IntSlider(value=min(top_n, most), min=1, max=most, description="top n",
                                       continuous_update=False),
            "score": widgets.FloatSlider(value=score, min=0.05, max=1.0, step=0.05, description="score >=",
                                         continuous_update=False),
        })

    def stages(self, image: int) -> Stages:
        """:func:`stages` of image number `image`, computed once."""
        if image not in self.cache:
            self.cache[image] = stages(self.model, self.images[image])
        return self.cache[image]

    def name(self, label: int) -> str:
        return self.categories[label] if self.categories else str(label)

    def draw(self, image: int, objectness: float, top_n: int, score: float) -> Figure:
        found = self.stages(image)
        target = self.targets[image] if self.targets is not None else None
        figure = Figure(figsize=(13, 4.9), layout="constrained")
        anchor_ax, proposal_ax, detection_ax = figure.subplots(1, 3)
        for ax in (anchor_ax, proposal_ax, detection_ax):
            show_image(self.images[image], ax)
            _draw_truth(ax, target)
        height, width = self.images[image].shape[-2:]

        chosen = found.anchors[found.objectness >= objectness]
        corners = [[(x1, y1), (x2, y1), (x2, y2), (x1, y2)] for x1, y1, x2, y2 in chosen.tolist()]
        anchors = PolyCollection(corners, closed=True, facecolors="none", edgecolors="#ffe119", linewidths=0.8,
                                 alpha=0.7)
        anchors.set_gid("anchors")
        anchor_ax.add_collection(anchors)
        anchor_ax.set_title(f"1. anchors: {len(chosen)} of {len(found.anchors)}\nwith objectness >= {objectness:.2f}",
                            fontsize=10)

        shown = found.proposals[:top_n]
        for i, (x1, y1, x2, y2) in enumerate(shown.tolist()):
            proposal_ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="#42d4f4",
                                            linewidth=2.0 if i < 3 else 1.0, gid=f"proposal-{i}"))
        nms = self.model.rpn.nms_thresh
        proposal_ax.set_title(f"2. proposals: the top {len(shown)} of {len(found.proposals)}\n"
                              f"(after decoding, clipping and NMS at IoU {nms:g})", fontsize=10)

        detections = found.detections
        kept = torch.nonzero(detections["scores"] >= score).reshape(-1).tolist()
        for k in kept:
            x1, y1, x2, y2 = detections["boxes"][k].tolist()
            label = int(detections["labels"][k])
            colour = PALETTE[label % len(PALETTE)]
            detection_ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2,
                                             gid=f"detection-{k}"))
            detection_ax.text(x1, y1, f"{self.name(label)} {float(detections['scores'][k]):.2f}", color="white",
                              fontsize=7, va="bottom",
                              bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.85})
        detection_ax.set_title(f"3. detections: {len(kept)} of {len(detections['scores'])}\nwith score >= "
                               f"{score:.2f} (after NMS per class)", fontsize=10)
        for ax in (anchor_ax, proposal_ax, detection_ax):  # anchors may leave the image: keep the image's frame
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
        figure.suptitle(f"image {image}" + ("" if target is None else f": {len(target['boxes'])} objects (dotted)"),
                        fontsize=11)
        return figure
