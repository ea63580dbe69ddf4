"""Ranking a detector's detections of one class over a data set, and the area under its
precision-recall curve (VOC's and COCO's interpolations): what chapter 9's mAP@0.5 and chapter
10's figures share. The functions of assignment a10 are not here, and no graded function may use
this module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

#: COCO's IoU thresholds 0.50, 0.55, ..., 0.95 (the values pycocotools uses).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: COCO's 101 recall levels 0, 0.01, ..., 1.
COCO_RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


@dataclass
class Ranking:
    """One class's detections over a data set, best first, each marked a hit (true positive) or not.

    scores float64[N] (decreasing), hit bool[N], image int64[N] and detection int64[N] (where
    each came from: image n, position in that image's prediction), overlap float64[N] (the IoU
    with the object it found, or the largest IoU with any object of its class in its image, 0 when
    there is none), truths: the number of objects of the class in the data set.
    """

    scores: np.ndarray
    hit: np.ndarray
    image: np.ndarray
    detection: np.ndarray
    overlap: np.ndarray
    truths: int

    @property
    def recall(self) -> np.ndarray:
        """float64[N]: the fraction of the objects found by the first 1, 2, ..., N detections."""
        return np.cumsum(self.hit) / max(self.truths, 1)

    @property
    def precision(self) -> np.ndarray:
        """float64[N]: the fraction of hits among the first 1, 2, ..., N detections."""
        return np.cumsum(self.hit) / np.arange(1, len(self.hit) + 1)


def rank_class(predictions: list[dict], targets: list[dict], label: int, iou_threshold: float = 0.5,
               max_per_image: int = 100) -> Ranking:
    """Rank the detections of class `label` over a data set and decide which found an object.

    predictions, targets: one dict per image ("boxes", "scores", "labels"; "boxes", "labels").
    In each image the class's detections are taken by decreasing score (equal scores: their
    order; at most `max_per_image`); each claims, among the objects of the class not yet
    claimed, the one it overlaps most if that IoU is >= iou_threshold (equal IoUs: the later
    object, as COCOeval). Then all images' detections are sorted by score (stable: image order on ties),
    which is the order of the precision-recall curve.
    """
    columns: list[list] = [[], [], [], [], []]  # score, hit, image, detection, overlap
    truths = 0
    for n, (prediction, target) in enumerate(zip(predictions, targets)):
        objects = target["boxes"][target["labels"] == label].detach().cpu().double().reshape(-1, 4)
        truths += len(objects)
        mine = torch.nonzero(prediction["labels"].cpu() == label).reshape(-1)
        scores = prediction["scores"].detach().cpu().double()[mine]
        order = torch.argsort(scores, descending=True, stable=True)[:max_per_image]
        mine, scores = mine[order], scores[order]
        boxes = prediction["boxes"].detach().cpu().double().reshape(-1, 4)[mine]
        overlaps = box_iou(boxes, objects).tolist() if len(objects) else [[] for _ in range(len(boxes))]
        claimed = [False] * len(objects)
        for score, index, row in zip(scores.tolist(), mine.tolist(), overlaps):
            best = -1  # the free object of largest IoU; >= takes the later of equal IoUs, as COCOeval
            for g, value in enumerate(row):
                if not claimed[g] and (best < 0 or value >= row[best]):
                    best = g
            found = best >= 0 and row[best] >= iou_threshold
            if found:
                claimed[best] = True
            columns[0].append(score)
            columns[1].append(found)
            columns[2].append(n)
            columns[3].append(index)
            columns[4].append(row[best] if found else max(row, default=0.0))
    scores = np.asarray(columns[0], dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    return Ranking(scores[order], np.asarray(columns[1], dtype=bool)[order],
                   np.asarray(columns[2], dtype=np.int64)[order], np.asarray(columns[3], dtype=np.int64)[order],
                   np.asarray(columns[4], dtype=np.float64)[order], truths)


def precision_envelope(precision: np.ndarray) -> np.ndarray:
    """The interpolated precision: at each point, the best precision at this recall or beyond."""
    return np.maximum.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]


def pr_area(ranking: Ranking, rule: str = "coco") -> float:
    """The area under the interpolated precision-recall curve of a ranking, by `rule`.

    "voc" (PASCAL VOC since 2010): the exact area under the envelope, recall step by recall step.
    "coco": the mean of the envelope read at the 101 recall levels 0, 0.01, ..., 1 (0 beyond the
    largest recall reached). NaN when the class has no object (AP is undefined), 0.0 when it
    has objects but no detection.
    """
    if ranking.truths == 0:
        return math.nan
    if len(ranking.scores) == 0:
        return 0.0
    recall, envelope = ranking.recall, precision_envelope(ranking.precision)
    if rule == "voc":
        widths = np.diff(recall, prepend=0.0)
        return float(widths @ envelope)
    if rule == "coco":
        where = np.searchsorted(recall, COCO_RECALL_LEVELS, side="left")
        readings = np.where(where < len(recall), envelope[np.minimum(where, len(recall) - 1)], 0.0)
        return float(readings.mean())
    raise ValueError(f"rule must be 'voc' or 'coco', not {rule!r}")
