"""Random detections and ground truths for the evaluation suite (a10) and its proofs."""
from __future__ import annotations

import torch

from autograder.suites.support import generator


def scene(g, truths: int, detections: int, quantised: bool, dtype=torch.float32, scale: float = 100.0,
          degenerate: bool = False):
    """(pred_boxes, pred_scores, gt_boxes): detections near the ground truths (jittered copies,
    duplicates) and elsewhere; quantised puts corners on a grid and scores on a few values (so
    IoUs sit exactly on thresholds and scores tie); degenerate makes about one box in five,
    detections and ground truths alike, inverted (x2 < x1, y2 < y1 or both) or of zero width or
    height."""
    corner = torch.rand(truths, 2, generator=g, dtype=torch.float64) * scale
    gt = torch.cat([corner, corner + 2 + torch.rand(truths, 2, generator=g, dtype=torch.float64) * scale / 2], 1)
    near = torch.randint(0, max(truths, 1), (detections,), generator=g)
    source = gt[near] if truths else torch.cat([corner[:0], corner[:0]], 1).new_zeros(detections, 4) + 10
    jitter = torch.randn(detections, 4, generator=g, dtype=torch.float64) * scale / 25
    far = torch.rand(detections, generator=g) < 0.25
    jitter[far] += torch.rand(int(far.sum()), 1, generator=g, dtype=torch.float64) * scale
    boxes = source + jitter
    boxes = torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    scores = torch.rand(detections, generator=g, dtype=torch.float64)
    if quantised:
        boxes, gt, scores = (boxes / 5).round() * 5, (gt / 5).round() * 5, (scores * 4).round() / 4
    if degenerate:
        boxes, gt = spoil(g, boxes), spoil(g, gt)
    return boxes.to(dtype), scores.to(dtype), gt.to(dtype)


def spoil(g, boxes):
    """A copy of boxes[N, 4] in which about one box in five is inverted in x, in y or in both, or
    made of zero width or height (x2 = x1, y2 = y1)."""
    boxes = boxes.clone()
    kind = torch.randint(0, 25, (len(boxes),), generator=g)
    for k, (x, y) in enumerate([(True, False), (False, True), (True, True)]):
        chosen = kind == k
        if x:
            boxes[chosen, 0], boxes[chosen, 2] = boxes[chosen, 2].clone(), boxes[chosen, 0].clone()
        if y:
            boxes[chosen, 1], boxes[chosen, 3] = boxes[chosen, 3].clone(), boxes[chosen, 1].clone()
    boxes[kind == 3, 2] = boxes[kind == 3, 0]
    boxes[kind == 4, 3] = boxes[kind == 4, 1]
    return boxes


def data_set(seed: int, images: int, classes: int, quantised: bool, max_detections: int = 25,
             dtype=torch.float32, device="cpu", degenerate: bool = False):
    g = generator(seed)
    predictions, targets = [], []
    for _ in range(images):
        truths, count = int(torch.randint(0, 6, (1,), generator=g)), int(torch.randint(0, max_detections, (1,), generator=g))
        boxes, scores, gt = scene(g, truths, count, quantised, dtype, degenerate=degenerate)
        gt_labels = torch.randint(1, classes + 1, (truths,), generator=g)
        labels = torch.randint(1, classes + 1, (count,), generator=g)
        right = torch.rand(count, generator=g) < 0.7  # most detections carry the class of their source
        if truths:
            source = torch.randint(0, truths, (count,), generator=g)
            labels = torch.where(right, gt_labels[source], labels)
        predictions.append({"boxes": boxes.to(device), "scores": scores.to(device), "labels": labels.to(device)})
        targets.append({"boxes": gt.to(device), "labels": gt_labels.to(device)})
    return predictions, targets
