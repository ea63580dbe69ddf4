"""Proofs for a08-yolo: the reference equals torchvision's nms and batched_nms (random boxes,
boxes whose IoUs sit exactly at the threshold, tied scores), and loops written cell by cell from
the YOLOv1 definitions for the targets, the loss and the decoding; plausible wrong answers lose
points on the test that names the mistake; right answers written differently (a loop over kept
boxes, one NMS per category, targets written object by object, a loss by masks per box index,
decoding cell by cell) earn full marks."""
import math

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from coursetools.reference import load_reference
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together

ASSIGNMENT = "a08-yolo"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=100, deadline=None, database=None)


def random_boxes(g, n, quantised, dtype):
    """float[n, 4]: continuous boxes, or boxes on a coarse integer grid (IoUs of exactly 1/2, 1/3...)."""
    if quantised:
        corner = torch.randint(0, 6, (n, 2), generator=g).to(dtype)
        return torch.cat([corner, corner + torch.randint(0, 5, (n, 2), generator=g).to(dtype)], 1)
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * 100
    return torch.cat([corner, corner + torch.rand(n, 2, generator=g, dtype=torch.float64) * 50], 1).to(dtype)


@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 400), st.booleans(), st.sampled_from([torch.float32, torch.float64]),
       st.sampled_from([0.0, 1 / 3, 0.5, 0.6, 2 / 3, 0.9]), st.integers(1, 5))
def test_nms_and_batched_nms_equal_torchvision(seed, n, quantised, dtype, threshold, categories):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, n, quantised, dtype)
    # Quantised scores tie often; torchvision's CPU nms breaks ties by index (a stable sort).
    scores = (torch.randint(0, 5, (n,), generator=g).to(dtype) if quantised
              else torch.rand(n, generator=g, dtype=torch.float64).to(dtype))
    assert torch.equal(REF.nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold))
    if quantised:  # torchvision's batched_nms orders categories' results with an unstable sort
        scores = torch.rand(n, generator=g, dtype=torch.float64).to(dtype)
    idxs = torch.randint(0, categories, (n,), generator=g) * 5
    assert torch.equal(REF.batched_nms(boxes, scores, idxs, threshold),
                       torchvision.ops.batched_nms(boxes, scores, idxs, threshold))


def test_nms_of_many_boxes_equals_torchvision():
    g = torch.Generator().manual_seed(1)
    corner = torch.rand(5000, 2, generator=g) * 800
    boxes = torch.cat([corner, corner + 4 + torch.rand(5000, 2, generator=g) * 100], 1)
    scores, idxs = torch.rand(5000, generator=g), torch.randint(0, 20, (5000,), generator=g)
    assert torch.equal(REF.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
    assert torch.equal(REF.batched_nms(boxes, scores, idxs, 0.5), torchvision.ops.batched_nms(boxes, scores, idxs, 0.5))


def targets_by_cell(boxes, labels, S, C):
    """The YOLOv1 target written object by object from the definition (first object wins a cell)."""
    target = torch.zeros(S, S, 5 + C, dtype=torch.float64)
    taken = set()
    for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        i, j = min(math.floor(cy * S), S - 1), min(math.floor(cx * S), S - 1)
        if (i, j) not in taken:
            taken.add((i, j))
            target[i, j, :5] = torch.tensor([cx * S - j, cy * S - i, x2 - x1, y2 - y1, 1.0])
            target[i, j, 5 + label] = 1.0
    return target


def iou_in_image(a, b, i, j, S):
    def corners(x, y, w, h):
        return (j + x) / S - w / 2, (i + y) / S - h / 2, (j + x) / S + w / 2, (i + y) / S + h / 2
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = corners(*a), corners(*b)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def loss_by_cell(pred, target, lambda_coord, lambda_noobj):
    """YOLOv1's loss cell by cell, in Python floats."""
    n, S = pred.shape[:2]
    C = target.shape[-1] - 5
    B = (pred.shape[-1] - C) // 5
    total = 0.0
    for k in range(n):
        for i in range(S):
            for j in range(S):
                p, t = pred[k, i, j].tolist(), target[k, i, j].tolist()
                boxes = [p[5 * b:5 * b + 5] for b in range(B)]
                if t[4] == 0:
                    total += lambda_noobj * sum(box[4] ** 2 for box in boxes)
                    continue
                ious = [iou_in_image(box[:4], t[:4], i, j, S) for box in boxes]
                r = ious.index(max(ious))
                x, y, w, h, c = boxes[r]
                total += lambda_coord * ((x - t[0]) ** 2 + (y - t[1]) ** 2 + (math.sqrt(w) - math.sqrt(t[2])) ** 2
                                         + (math.sqrt(h) - math.sqrt(t[3])) ** 2)
                total += (c - 1) ** 2 + lambda_noobj * sum(box[4] ** 2 for b, box in enumerate(boxes) if b != r)
                total += sum((p[5 * B + q] - t[5 + q]) ** 2 for q in range(C))
    return total / n


def decode_by_cell(pred, conf_threshold, iou_threshold, B):
    S = pred.shape[0]
    boxes, scores, labels = [], [], []
    for i in range(S):
        for j in range(S):
            p = pred[i, j].tolist()
            probabilities = p[5 * B:]
            label = probabilities.index(max(probabilities))
            for b in range(B):
                x, y, w, h, c = p[5 * b:5 * b + 5]
                if c * probabilities[label] > conf_threshold:
                    cx, cy = (j + x) / S, (i + y) / S
                    boxes.append([min(max(v, 0.0), 1.0) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)])
                    scores.append(c * probabilities[label])
                    labels.append(label)
    boxes = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    scores, labels = torch.tensor(scores, dtype=torch.float64), torch.tensor(labels, dtype=torch.int64)
    keep = torchvision.ops.batched_nms(boxes, scores, labels, iou_threshold)
    return boxes[keep], scores[keep], labels[keep]


def objects(g, count, classes):
    corner = torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.9
    size = 0.02 + torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.6
    return torch.cat([corner, (corner + size).clamp(max=1.0)], 1), torch.randint(0, classes, (count,), generator=g)


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 3), st.integers(1, 7), st.integers(1, 3), st.integers(1, 5),
       st.sampled_from([(5.0, 0.5), (1.0, 2.0)]))
def test_targets_loss_and_decoding_equal_the_definitions(seed, n, S, B, C, lambdas):
    g = torch.Generator().manual_seed(seed)
    scenes = [objects(g, int(torch.randint(0, 9, (1,), generator=g)), C) for _ in range(n)]
    targets = [REF.yolo_targets(boxes, labels, S, C) for boxes, labels in scenes]
    for (boxes, labels), target in zip(scenes, targets):
        assert torch.allclose(target, targets_by_cell(boxes, labels, S, C), atol=1e-12)
    pred = 0.01 + torch.rand(n, S, S, B * 5 + C, generator=g, dtype=torch.float64) * 0.98
    target = torch.stack(targets)
    assert float(REF.yolo_loss(pred, target, *lambdas)) == pytest.approx(loss_by_cell(pred, target, *lambdas),
                                                                          abs=1e-10)
    for got, want in zip(REF.decode_yolo(pred[0], 0.1, 0.5, B), decode_by_cell(pred[0], 0.1, 0.5, B)):
        assert torch.allclose(got.double(), want.double(), atol=1e-12) and got.dtype == want.dtype


def test_yolov1_shapes_of_the_paper():
    # S = 7, B = 2, C = 20: a 7 x 7 x 30 prediction; one object per cell at most.
    boxes = torch.tensor([[0.1, 0.1, 0.3, 0.5], [0.12, 0.15, 0.28, 0.45], [0.6, 0.6, 0.9, 0.95]])
    target = REF.yolo_targets(boxes, torch.tensor([3, 7, 19]), 7, 20)
    assert target.shape == (7, 7, 25) and int(target[..., 4].sum()) == 2
    pred = torch.full((1, 7, 7, 30), 0.5, requires_grad=True)
    loss = REF.yolo_loss(pred, target[None], 5.0, 0.5)
    loss.backward()
    assert loss.dim() == 0 and pred.grad.abs().sum() > 0


# Wrong answers lose points where their mistake is named -----------------------------------------

NMS = '''
def nms(boxes, scores, iou_threshold):
    order = {order}
    b = boxes[order]
    if {half}:
        b = b.float()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    iou = {iou}
    suppressed = torch.zeros(len(b), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(b)):
        if {skip}:
            continue
        keep.append(i)
        suppressed |= {compare}
        suppressed[i] = False
    return {result}
'''
NMS_PARTS = dict(order="torch.sort(scores, descending=True, stable=True).indices",
                 half="b.dtype in (torch.float16, torch.bfloat16)",
                 iou="inter / (area[:, None] + area[None, :] - inter)", skip="suppressed[i]",
                 compare="(iou[i] > iou_threshold) & (torch.arange(len(b), device=boxes.device) > i)",
                 result="order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]")


def nms_code(**changes):
    return NMS.format(**{**NMS_PARTS, **changes})


BATCHED = '''
def batched_nms(boxes, scores, idxs, iou_threshold):
    kept = []
    for category in {categories}:
        members = (idxs == category).nonzero().squeeze(1)
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    kept = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long, device=boxes.device)
    {order}
'''
BATCHED_PARTS = dict(categories="idxs.unique().tolist()",
                     order="kept = kept.sort().values\n    return kept[torch.sort(scores[kept], descending=True, "
                           "stable=True).indices]")


def batched(**changes):
    return BATCHED.format(**{**BATCHED_PARTS, **changes})


TARGETS = '''
def yolo_targets(boxes, labels, S, C):
    target = torch.zeros(S, S, 5 + C, dtype=boxes.dtype, device=boxes.device)
    for k in {objects}:
        x1, y1, x2, y2 = boxes[k].tolist()
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        i, j = {cell}
        target[{where}, :5] = torch.tensor([{offsets}, x2 - x1, y2 - y1, 1.0], dtype=boxes.dtype)
        target[{where}, 5:] = 0
        target[{where}, 5 + int(labels[k])] = 1
    return target
'''
TARGETS_PARTS = dict(objects="reversed(range(len(boxes)))",
                     cell="min(math.floor(cy * S), S - 1), min(math.floor(cx * S), S - 1)", where="i, j",
                     offsets="cx * S - j, cy * S - i")


def targets(**changes):
    return "import math\n" + TARGETS.format(**{**TARGETS_PARTS, **changes})


# A student's loss: boxes compared one box index at a time, the responsible one picked by masks.
LOSS = '''
def yolo_loss(pred, target, lambda_coord=5.0, lambda_noobj=0.5):
    N, S = pred.shape[:2]
    C = target.shape[-1] - 5
    B = (pred.shape[-1] - C) // 5
    obj = target[..., 4] == 1
    rows = torch.arange(S, dtype=pred.dtype, device=pred.device)[:, None]
    cols = torch.arange(S, dtype=pred.dtype, device=pred.device)[None, :]

    def corners(t):
        cx, cy = (cols + t[..., 0]) / S, (rows + t[..., 1]) / S
        return cx - t[..., 2] / 2, cy - t[..., 3] / 2, cx + t[..., 2] / 2, cy + t[..., 3] / 2

    tx1, ty1, tx2, ty2 = corners(target)
    ious = []
    for b in range(B):
        px1, py1, px2, py2 = corners(pred[..., 5 * b:5 * b + 4])
        inter = (torch.minimum(px2, tx2) - torch.maximum(px1, tx1)).clamp(min=0) * \\
            (torch.minimum(py2, ty2) - torch.maximum(py1, ty1)).clamp(min=0)
        union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter
        ious.append(inter / union)
    best = {best}
    total = pred.new_zeros(())
    for b in range(B):
        box = pred[..., 5 * b:5 * b + 5]
        mine = obj & (best == b)
        coord = ((box[..., 0] - target[..., 0]) ** 2 + (box[..., 1] - target[..., 1]) ** 2
                 + {size_error})
        total = total + lambda_coord * coord[mine].sum() + ((box[..., 4] - 1) ** 2)[mine].sum()
        total = total + lambda_noobj * (box[..., 4] ** 2)[{no_object}].sum()
        {classes_per_box}
    {classes_per_cell}
    return {result}
'''
LOSS_PARTS = dict(best="torch.stack(ious, -1).nan_to_num(0.0).argmax(-1)",
                  size_error="(box[..., 2].sqrt() - target[..., 2].sqrt()) ** 2 + (box[..., 3].sqrt() - "
                             "target[..., 3].sqrt()) ** 2",
                  no_object="~mine", classes_per_box="pass",
                  classes_per_cell="total = total + ((pred[..., 5 * B:] - target[..., 5:]) ** 2)[obj].sum()",
                  result="total / N")


def loss(**changes):
    return LOSS.format(**{**LOSS_PARTS, **changes})


DECODE = '''
def decode_yolo(pred, conf_threshold, iou_threshold, num_boxes=2):
    S, B = pred.shape[0], num_boxes
    found_boxes, found_scores, found_labels = [], [], []
    probability, label = pred[..., 5 * B:].max(-1)
    rows = torch.arange(S, dtype=pred.dtype, device=pred.device)[:, None]
    cols = torch.arange(S, dtype=pred.dtype, device=pred.device)[None, :]
    for b in range(B):
        x, y, w, h, c = pred[..., 5 * b:5 * b + 5].unbind(-1)
        cx, cy = (cols + x) / S, (rows + y) / S
        corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1){clip}
        found_boxes.append(corners)
        found_scores.append({score})
        found_labels.append(label)
    boxes = torch.stack(found_boxes, 2).reshape(-1, 4)
    scores = torch.stack(found_scores, 2).reshape(-1)
    labels = torch.stack(found_labels, 2).reshape(-1)
    keep = scores > conf_threshold
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    kept = {suppression}
    return boxes[kept], scores[kept], labels[kept]
'''
DECODE_PARTS = dict(clip=".clamp(0, 1)", score="c * probability",
                    suppression="batched_nms(boxes, scores, labels, iou_threshold)")


def decode(**changes):
    return DECODE.format(**{**DECODE_PARTS, **changes})


WRONG = {
    # nms
    "suppression at IoU equal to the threshold": ("nms", nms_code(
        compare="(iou[i] >= iou_threshold) & (torch.arange(len(b), device=boxes.device) > i)"),
        "a box at exactly the threshold is kept", ()),
    "kept boxes returned in index order": ("nms", nms_code(
        result="order[torch.tensor(keep, dtype=torch.long, device=boxes.device)].sort().values"),
        "ordered by decreasing score", ()),
    "suppressed boxes still suppress": ("nms", nms_code(
        result="order[~(iou > iou_threshold).triu(1).any(0)]"), "repeat with the next box still there", ()),
    "IoU of float16 boxes in float16": ("nms", nms_code(half="False"), "compute the IoU of float16 boxes in float32",
                                        ()),
    "the union counts the intersection twice": ("nms", nms_code(iou="inter / (area[:, None] + area[None, :])"),
                                                "should have been suppressed", ()),
    "a loop over every pair of boxes": ("nms", '''
def nms(boxes, scores, iou_threshold):
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    data = boxes.tolist()
    keep = []
    for i in order:
        x1, y1, x2, y2 = data[i]
        fine = True
        for j in keep:
            a1, b1, a2, b2 = data[j]
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            union = (x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter
            if union > 0 and inter / union > iou_threshold:
                fine = False
                break
        if fine:
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)
''', "not a Python loop over pairs of boxes", ()),
    "torchvision's nms called": ("nms", '''
def nms(boxes, scores, iou_threshold):
    import torchvision
    return torchvision.ops.nms(boxes, scores, iou_threshold)
''', "torchvision.ops, which this exercise does not allow", ()),
    # batched_nms
    "categories ignored": ("batched-nms", '''
def batched_nms(boxes, scores, idxs, iou_threshold):
    return nms(boxes, scores, iou_threshold)
''', "never suppress each other", ("decode_yolo",)),
    "results ordered by category": ("batched-nms", batched(order="return kept"), "decreasing score",
                                    ("decode_yolo",)),
    "categories moved apart by too little": ("batched-nms", '''
def batched_nms(boxes, scores, idxs, iou_threshold):
    return nms(boxes + idxs[:, None].to(boxes.dtype) * 10.0, scores, iou_threshold)
''', "never suppress each other", ("decode_yolo",)),
    # yolo_targets
    "the last object wins a shared cell": ("yolo-targets", targets(objects="range(len(boxes))"),
                                           "the first object wins", ()),
    "rows and columns swapped": ("yolo-targets", targets(where="j, i"), "row min(floor(cy S), S - 1)", ()),
    "centres on the right edge not clamped": ("yolo-targets", targets(cell="math.floor(cy * S), math.floor(cx * S)"),
                                              "min(floor(cx S), S - 1)", ()),
    "the centre instead of its offset in the cell": ("yolo-targets", targets(offsets="cx, cy"), "cx S - j", ()),
    # yolo_loss
    "the most confident box made responsible": ("yolo-loss", loss(
        best="torch.stack([pred[..., 5 * b + 4] for b in range(B)], -1).argmax(-1)"),
        "largest IoU with the target, whatever its confidence", ()),
    "no square roots of w and h": ("yolo-loss", loss(
        size_error="(box[..., 2] - target[..., 2]) ** 2 + (box[..., 3] - target[..., 3]) ** 2"), "sqrt(w)", ()),
    "no-object term only in empty cells": ("yolo-loss", loss(no_object="~obj"), "lambda_noobj c^2 for every other box",
                                           ()),
    "class errors counted once per box": ("yolo-loss", loss(
        classes_per_box="total = total + ((pred[..., 5 * B:] - target[..., 5:]) ** 2)[obj].sum()",
        classes_per_cell="pass"), "once per object cell", ()),
    "not divided by the batch size": ("yolo-loss", loss(result="total"), "divided by the batch size N", ()),
    # decode_yolo
    "the confidence alone as the score": ("decode-yolo", decode(score="c"),
                                          "score = confidence x the largest class probability", ()),
    "boxes not clipped to the image": ("decode-yolo", decode(clip=""), "clipped to [0, 1]", ()),
    "suppression across classes": ("decode-yolo", decode(suppression="nms(boxes, scores, iou_threshold)"),
                                   "batched_nms by label", ()),
}

MISTAKES = WRONG
SLOW = ["a loop over every pair of boxes"]

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW)


DIFFERENT_BUT_RIGHT = {"nms": nms_code(), "batched-nms": batched(), "yolo-targets": targets(), "yolo-loss": loss(),
                       "decode-yolo": decode()}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
