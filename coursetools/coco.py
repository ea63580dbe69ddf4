"""pycocotools' COCOeval run on the course's format (lists of dicts of tensors, one per image), the
independent yardstick of a10-evaluation's proofs and of bench/evaluation.py."""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def coco_evaluation(predictions, targets, iou_thresholds=None) -> COCOeval:
    """COCOeval (bbox) run on lists of dicts, after evaluate() and accumulate(): the data as it is
    (each image's ground truths in their order, boxes (x1, y1, x2, y2) given as (x, y, w, h) with
    w = x2 - x1 and h = y2 - y1, negative for an inverted box, and area w h)."""
    images, annotations, results, labels = [], [], [], set()
    for i, (prediction, target) in enumerate(zip(predictions, targets)):
        images.append({"id": i + 1, "width": 1000, "height": 1000})
        for box, label in zip(target["boxes"].double().tolist(), target["labels"].tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": label,
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
            labels.add(label)
        for box, score, label in zip(prediction["boxes"].double().tolist(), prediction["scores"].double().tolist(),
                                     prediction["labels"].tolist()):
            results.append({"image_id": i + 1, "category_id": label, "score": score,
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
            labels.add(label)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in sorted(labels)]}
        truth.createIndex()
        if results:
            detections = truth.loadRes(results)
        else:
            detections = COCO()
            detections.dataset = {"images": images, "annotations": [], "categories": truth.dataset["categories"]}
            detections.createIndex()
        evaluation = COCOeval(truth, detections, "bbox")
        if iou_thresholds is not None:
            evaluation.params.iouThrs = np.array(iou_thresholds, dtype=np.float64)
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


def coco_map(predictions, targets, iou_thresholds=None) -> dict:
    evaluation = coco_evaluation(predictions, targets, iou_thresholds)
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # [T, R, K] for area "all", maxDets 100

    def mean(values):
        values = values[values > -1]
        return float(values.mean()) if values.size else -1.0
    thresholds = evaluation.params.iouThrs
    return {"map": mean(precision), **{name: mean(precision[np.isclose(thresholds, t)])
                                       for name, t in (("map_50", 0.5), ("map_75", 0.75)) if np.isclose(thresholds, t).any()}}
