"""Visible checks for assignment a12-modern-detectors: ``from odcourse.checks import modern as check``.

The yardsticks are torchvision's and scipy's own code: ``torchvision.ops.sigmoid_focal_loss`` and
``generalized_box_iou``, the matching of ``torchvision.models.detection.FCOS.compute_loss`` (called
with a head that hands back the matches it receives), ``BoxLinearCoder`` and the centre-ness of
``FCOSHead.compute_loss``, ``scipy.optimize.linear_sum_assignment``; DETR's loss is recomputed here
from those pieces and ``torch.nn.functional.cross_entropy``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..modern import fcos_matches as torchvision_fcos_match
from ..modern import fcos_points
from . import Report
from .tensors import boxes_picture, call_keeping_inputs, close, expect_tensor, note_if_accepted


def _expect_value_error(report: Report, fn, args, kwargs, what: str) -> None:
    try:
        fn(*args, **kwargs)
    except ValueError:
        report.expect(True, "")
        return
    except Exception as error:  # any other error is the wrong kind
        report.expect(False, f"{what} must raise a ValueError, not {type(error).__name__}")
        return
    report.expect(False, f"{what} must raise a ValueError (torchvision does), not return a result")


# sigmoid_focal_loss ------------------------------------------------------------------------------

def sigmoid_focal_loss(fn) -> None:
    """Check ``sigmoid_focal_loss`` against torchvision.ops.sigmoid_focal_loss."""
    from torchvision.ops import sigmoid_focal_loss as torchvision_focal_loss

    with Report("sigmoid_focal_loss") as report:
        logits = torch.tensor([[-3.0, -0.5, 0.0, 2.0], [4.0, 1.0, -2.0, 0.3], [-1.0, 3.0, 0.7, -4.0]])
        targets = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
        got = call_keeping_inputs(report, fn, logits, targets)
        want = torchvision_focal_loss(logits, targets)
        if expect_tensor(report, got, "the loss of 3 x 4 logits (reduction 'none')", shape=(3, 4), dtype=torch.float32):
            positive = targets == 1
            report.expect(close(got[positive], want[positive]),
                          f"the positives' losses are {[round(v, 4) for v in got[positive].tolist()]} but should be "
                          f"{[round(v, 4) for v in want[positive].tolist()]}: for a target 1, p_t = sigmoid(x), "
                          "alpha_t = alpha and the loss is -alpha (1 - p_t)^gamma log(p_t)")
            report.expect(close(got[~positive], want[~positive]),
                          "the negatives' losses differ from torchvision's: for a target 0, p_t = 1 - sigmoid(x) and "
                          "alpha_t = 1 - alpha")
        plain = report.call(fn, logits, targets, -1.0, 0.0)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        report.expect(isinstance(plain, torch.Tensor) and close(plain, bce),
                      "with alpha = -1 (no weighting) and gamma = 0 the focal loss is plain binary cross-entropy")
        for gamma in (1.0, 5.0):
            got = report.call(fn, logits, targets, 0.5, gamma)
            report.expect(isinstance(got, torch.Tensor) and close(got, torchvision_focal_loss(logits, targets, 0.5, gamma)),
                          f"with alpha 0.5 and gamma {gamma:g} the losses differ: the modulating factor is "
                          "(1 - p_t)^gamma, small for easy examples (p_t near 1)")
        for reduction in ("sum", "mean"):
            got = report.call(fn, logits, targets, 0.25, 2.0, reduction)
            want = torchvision_focal_loss(logits, targets, 0.25, 2.0, reduction)
            if expect_tensor(report, got, f"the loss with reduction '{reduction}'", shape=()):
                report.expect(close(got, want), f"reduction '{reduction}' gives {float(got):.5f} where "
                                                f"{float(want):.5f} was expected")
        _expect_value_error(report, fn, (logits, targets), {"reduction": "average"}, "reduction='average'")
        far = torch.tensor([40.0, -40.0, 40.0, -40.0])
        labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
        got = report.call(fn, far, labels)
        if expect_tensor(report, got, "the loss of logits +-40", shape=(4,)):
            report.expect(bool(torch.isfinite(got).all()) and close(got, torchvision_focal_loss(far, labels), rtol=1e-4),
                          "logits of +-40 give an infinite or wrong loss: log(1 - sigmoid(40)) is log(0) in float32; "
                          "compute -log(p_t) with F.binary_cross_entropy_with_logits, which is stable")
        leaf = logits.clone().requires_grad_(True)
        out = report.call(fn, leaf, targets, 0.25, 2.0, "sum")
        report.expect(isinstance(out, torch.Tensor) and out.requires_grad,
                      "the loss must be differentiable with respect to the logits (use tensor operations)")


# generalized_box_iou -----------------------------------------------------------------------------

def generalized_box_iou(fn) -> None:
    """Check ``generalized_box_iou`` against torchvision.ops.generalized_box_iou."""
    from torchvision.ops import generalized_box_iou as torchvision_giou

    with Report("generalized_box_iou") as report:
        first = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [2.0, 2.0, 6.0, 8.0]])
        second = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [40.0, 30.0, 50.0, 40.0],
                               [3.0, 3.0, 5.0, 5.0]])
        report.illustrate(boxes_picture({"boxes1": (first, "#e6194b"), "boxes2": (second, "#4363d8")},
                                        "the boxes of the check"))
        got = call_keeping_inputs(report, fn, first, second)
        want = torchvision_giou(first, second)
        if expect_tensor(report, got, "the GIoU of 3 boxes with 4 boxes", shape=(3, 4), dtype=torch.float32):
            report.expect(close(got[0, 0], want[0, 0]), "a box with itself has GIoU 1")
            report.expect(close(got[:, 2], want[:, 2]),
                          f"boxes far apart have GIoU {[round(v, 3) for v in got[:, 2].tolist()]} but should have "
                          f"{[round(v, 3) for v in want[:, 2].tolist()]}: IoU 0 minus the share of the enclosing box C "
                          "that the two boxes do not cover, (|C| - |A u B|) / |C|")
            report.expect(close(got, want), "GIoU = IoU - (|C| - |A u B|) / |C|, with C the smallest box around both "
                                            "boxes and |A u B| = |A| + |B| - |A n B|; entry (i, j) pairs boxes1[i] "
                                            "with boxes2[j]")
        empty = report.call(fn, torch.zeros(0, 4), second)
        expect_tensor(report, empty, "the GIoU of no boxes with 4 boxes", shape=(0, 4))
        doubles = report.call(fn, first.double(), second.double())
        expect_tensor(report, doubles, "the GIoU of float64 boxes", shape=(3, 4), dtype=torch.float64)
        leaf = first.clone().requires_grad_(True)
        out = report.call(fn, leaf, second)
        report.expect(isinstance(out, torch.Tensor) and out.requires_grad,
                      "the GIoU must be differentiable (DETR's loss trains boxes with it)")


# fcos_match, fcos_targets, centerness ------------------------------------------------------------

# A 128 x 128 image with levels of stride 8, 16 and 32 (units 8, 16, 32): a large object, which the
# second level takes away from the centre, a small one inside it, which wins the points they share on
# the first level, and a small one on its own.
CHECK_IMAGE = 128
CHECK_OBJECTS = torch.tensor([[4.0, 6.0, 124.0, 122.0], [50.0, 52.0, 74.0, 80.0], [90.0, 10.0, 122.0, 40.0]])


def fcos_match(fn) -> None:
    """Check ``fcos_match`` against the matching of torchvision's FCOS.compute_loss."""
    with Report("fcos_match") as report:
        anchors, counts = fcos_points(CHECK_IMAGE, (8, 16, 32), (8, 16, 32))
        want = torchvision_fcos_match(anchors, CHECK_OBJECTS, counts)
        centres = (anchors[want >= 0, :2] + anchors[want >= 0, 2:]) / 2
        report.illustrate(boxes_picture({"objects": (CHECK_OBJECTS, "#e6194b"),
                                         "points that take an object": (torch.cat([centres - 0.5, centres + 0.5], 1),
                                                                        "#3cb44b")},
                                        "the check's objects on a 128 x 128 image and the points they get",
                                        size=(CHECK_IMAGE, CHECK_IMAGE)))
        got = call_keeping_inputs(report, fn, anchors, CHECK_OBJECTS, counts, 1.5)
        if expect_tensor(report, got, f"the matches of {len(anchors)} points", shape=(len(anchors),),
                         dtype=torch.int64):
            small = want == 1
            report.expect(bool((got[small] == 1).all()),
                          "some points inside both the large object 0 and the small object 1 are not given object 1: "
                          "a point with several candidates takes the one of smallest area")
            report.expect(bool((got[want == -1] == -1).all()),
                          f"{int(((got >= 0) & (want == -1)).sum())} points take an object they may not: a candidate "
                          "needs the point within center_sampling_radius x its unit of the object's centre, strictly "
                          "inside the box, and max(l, t, r, b) inside its level's range (4s, 8s)")
            second = want[counts[0]:counts[0] + counts[1]] == 0
            report.expect(bool((got[counts[0]:counts[0] + counts[1]][second] == 0).all()),
                          "points of the second level (unit 16) do not take the large object 0: for them it is in "
                          "range when 64 < max(l, t, r, b) < 128")
            report.expect(got.tolist() == want.tolist(),
                          f"{int((got != want).sum())} of {len(anchors)} points are matched differently from "
                          "torchvision's FCOS: the first level's range starts at 0 and the last level's has no end")
        wide = report.call(fn, anchors, CHECK_OBJECTS, counts, 3.0)
        if expect_tensor(report, wide, "the matches with center_sampling_radius 3", shape=(len(anchors),)):
            report.expect(wide.tolist() == torchvision_fcos_match(anchors, CHECK_OBJECTS, counts, 3.0).tolist(),
                          "with center_sampling_radius 3 the centre region is 3 units (the anchor's side) each way")
        none = report.call(fn, anchors, torch.zeros(0, 4), counts, 1.5)
        if expect_tensor(report, none, "the matches without objects", shape=(len(anchors),), dtype=torch.int64):
            report.expect(bool((none == -1).all()), "without objects every point is background (-1)")


def fcos_targets(fn) -> None:
    """Check ``fcos_targets`` against torchvision's BoxLinearCoder(normalize_by_size=True)."""
    from torchvision.models.detection._utils import BoxLinearCoder

    with Report("fcos_targets") as report:
        anchors, counts = fcos_points(CHECK_IMAGE, (8, 16, 32), (8, 16, 32))
        matched = torchvision_fcos_match(anchors, CHECK_OBJECTS, counts)
        got = call_keeping_inputs(report, fn, anchors, CHECK_OBJECTS, matched)
        want = BoxLinearCoder(normalize_by_size=True).encode(anchors, CHECK_OBJECTS[matched.clamp(min=0)])
        positive = matched >= 0
        if expect_tensor(report, got, f"the targets of {len(anchors)} points", shape=(len(anchors), 4),
                         dtype=torch.float32):
            report.expect(close(got[positive], want[positive]),
                          "the matched points' targets differ: (l, t, r, b) = ((x - x1) / w, (y - y1) / h, "
                          "(x2 - x) / w, (y2 - y) / h), from the anchor's centre (x, y), divided by its width w and "
                          "height h")
            report.expect(bool((got[~positive] == 0).all()), "points matched to nothing (-1) have targets 0")
        tall = torch.tensor([[10.0, 0.0, 14.0, 16.0]])  # a point at (12, 8) with a 4 x 16 anchor
        box = torch.tensor([[0.0, 4.0, 20.0, 30.0]])
        got = report.call(fn, tall, box, torch.tensor([0]))
        if expect_tensor(report, got, "the target of a 4 x 16 anchor", shape=(1, 4)):
            report.expect(close(got, torch.tensor([[3.0, 0.25, 2.0, 1.375]])),
                          f"a point at (12, 8) with a 4 x 16 anchor and the box (0, 4, 20, 30) has targets "
                          f"(12 / 4, 4 / 16, 8 / 4, 22 / 16) = (3, 0.25, 2, 1.375), not "
                          f"{[round(v, 4) for v in got[0].tolist()]}: l and r divide by the width, t and b by the "
                          "height")
        none = report.call(fn, anchors, torch.zeros(0, 4), torch.full((len(anchors),), -1))
        if expect_tensor(report, none, "the targets without objects", shape=(len(anchors), 4)):
            report.expect(bool((none == 0).all()), "without objects every target is 0")


def centerness(fn) -> None:
    """Check ``centerness`` against the centre-ness targets of torchvision's FCOSHead."""
    with Report("centerness") as report:
        ltrb = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 2.0], [0.5, 4.0, 2.0, 1.0], [3.0, 0.2, 1.0, 0.8]])

        def expected(rows):  # torchvision's FCOSHead, line for line
            left_right, top_bottom = rows[..., [0, 2]], rows[..., [1, 3]]
            return torch.sqrt((left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0])
                              * (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0]))

        got = call_keeping_inputs(report, fn, ltrb)
        if expect_tensor(report, got, "the centre-ness of 4 rows", shape=(4,), dtype=torch.float32):
            report.expect(close(got[0], torch.tensor(1.0)), "a point at the centre of its box (l = r, t = b) has "
                                                            "centre-ness 1")
            report.expect(close(got, expected(ltrb)),
                          f"got {[round(v, 4) for v in got.tolist()]} but expected "
                          f"{[round(v, 4) for v in expected(ltrb).tolist()]}: sqrt(min(l, r) / max(l, r) x "
                          "min(t, b) / max(t, b)), with (l, t, r, b) in that order")
        batch = ltrb.repeat(2, 1, 1)
        got = report.call(fn, batch)
        if expect_tensor(report, got, "the centre-ness of a [2, 4, 4] batch", shape=(2, 4)):
            report.expect(close(got, expected(batch)), "with leading dimensions each row of 4 still gives one value")
        empty = report.call(fn, torch.zeros(0, 4))
        expect_tensor(report, empty, "the centre-ness of no rows", shape=(0,))


# hungarian_match ---------------------------------------------------------------------------------

def _scipy_cost(cost):
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.numpy())
    return float(cost.numpy()[rows, cols].sum())


def _assignment(report: Report, result, cost, what: str) -> bool:
    """Whether result is a valid assignment of the columns of cost (one finding per problem)."""
    queries, objects = cost.shape
    if not report.expect(isinstance(result, tuple) and len(result) == 2,
                         f"{what}: return a tuple (rows, cols) of two tensors"):
        return False
    rows, cols = result
    ok = expect_tensor(report, rows, f"{what}: rows", shape=(objects,), dtype=torch.int64)
    ok &= expect_tensor(report, cols, f"{what}: cols", shape=(objects,), dtype=torch.int64)
    if not ok:
        return False
    ok &= report.expect(sorted(cols.tolist()) == list(range(objects)),
                        f"{what}: cols {cols.tolist()} must hold every object (column) exactly once")
    ok &= report.expect(len(set(rows.tolist())) == objects and all(0 <= r < queries for r in rows.tolist()),
                        f"{what}: rows {rows.tolist()} must be distinct predictions (rows of the cost)")
    ok &= report.expect(rows.tolist() == sorted(rows.tolist()), f"{what}: the pairs must be sorted by row")
    return bool(ok)


def hungarian_match(fn) -> None:
    """Check ``hungarian_match`` against scipy.optimize.linear_sum_assignment (total costs)."""
    with Report("hungarian_match") as report:
        # Greedy (each object its cheapest free prediction, in order) pays 1 + 10 = 11; the optimum is 2 + 3 = 5.
        trap = torch.tensor([[1.0, 10.0], [2.0, 3.0], [9.0, 9.0]])
        result = call_keeping_inputs(report, fn, trap)
        if _assignment(report, result, trap, "the 3 x 2 cost [[1, 10], [2, 3], [9, 9]]"):
            total = float(trap[result[0], result[1]].sum())
            report.expect(total == _scipy_cost(trap),
                          f"the assignment costs {total:g} but the least total cost is {_scipy_cost(trap):g}: giving "
                          "object 0 its cheapest prediction (row 0) first forces object 1 onto a costly one; the "
                          "Hungarian algorithm revises earlier choices along augmenting paths")
        g = torch.Generator().manual_seed(0)
        for queries, objects in ((6, 6), (9, 4), (12, 7)):
            cost = torch.randn(queries, objects, generator=g, dtype=torch.float64)
            result = report.call(fn, cost)
            what = f"a random {queries} x {objects} cost"
            if _assignment(report, result, cost, what):
                total = float(cost[result[0], result[1]].sum())
                report.expect(abs(total - _scipy_cost(cost)) < 1e-9,
                              f"{what}: the assignment costs {total:.4f}, more than the least total cost "
                              f"{_scipy_cost(cost):.4f} (scipy's linear_sum_assignment)")
        tied = torch.ones(4, 3)
        result = report.call(fn, tied)
        _assignment(report, result, tied, "a cost of equal entries (any assignment is optimal)")
        empty = report.call(fn, torch.zeros(5, 0))
        if report.expect(isinstance(empty, tuple) and len(empty) == 2, "no objects: return two empty tensors"):
            expect_tensor(report, empty[0], "rows without objects", shape=(0,), dtype=torch.int64)
        note_if_accepted(report, fn, (torch.rand(2, 3),), "a cost with fewer rows (2) than columns (3)",
                         torchvision_raises=False)


# detr_loss ---------------------------------------------------------------------------------------

def expected_detr_loss(pred_logits, pred_boxes, gt_labels, gt_boxes, eos_coef=0.1, weights=(1, 5, 2)):
    """DETR's SetCriterion for one image, from torchvision's box operations and scipy's assignment."""
    from scipy.optimize import linear_sum_assignment
    from torchvision.ops import box_convert
    from torchvision.ops import generalized_box_iou as torchvision_giou

    corners_pred = box_convert(pred_boxes, "cxcywh", "xyxy")
    corners_gt = box_convert(gt_boxes, "cxcywh", "xyxy")
    with torch.no_grad():
        cost = (weights[1] * torch.cdist(pred_boxes, gt_boxes, p=1)
                - weights[0] * pred_logits.softmax(-1)[:, gt_labels]
                - weights[2] * torchvision_giou(corners_pred, corners_gt))
    rows, cols = (torch.as_tensor(a, dtype=torch.int64) for a in linear_sum_assignment(cost.cpu().numpy()))
    target = torch.full(pred_logits.shape[:1], pred_logits.shape[1] - 1, dtype=torch.int64)
    target[rows] = gt_labels[cols]
    weight = torch.cat([torch.ones(pred_logits.shape[1] - 1), torch.tensor([eos_coef])]).to(pred_logits.dtype)
    boxes = max(len(gt_labels), 1)
    pairs = torchvision_giou(corners_pred[rows], corners_gt[cols])
    return {"loss_ce": F.cross_entropy(pred_logits, target, weight),
            "loss_bbox": F.l1_loss(pred_boxes[rows], gt_boxes[cols], reduction="sum") / boxes,
            "loss_giou": (len(rows) - torch.trace(pairs)) / boxes if len(rows) else pred_boxes.sum() * 0}


def _detr_example(seed: int, queries: int, classes: int, objects: int):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(queries, classes + 1, generator=g)
    boxes = torch.cat([torch.rand(queries, 2, generator=g) * 0.6 + 0.2, torch.rand(queries, 2, generator=g) * 0.3 + 0.05], 1)
    labels = torch.randint(0, classes, (objects,), generator=g)
    truth = torch.cat([torch.rand(objects, 2, generator=g) * 0.6 + 0.2, torch.rand(objects, 2, generator=g) * 0.3 + 0.05], 1)
    return logits, boxes, labels, truth


def detr_loss(fn) -> None:
    """Check ``detr_loss`` against DETR's set loss computed from torchvision's and scipy's pieces."""
    with Report("detr_loss") as report:
        args = _detr_example(0, 8, 3, 3)
        got = call_keeping_inputs(report, fn, *args)
        want = expected_detr_loss(*args)
        if report.expect(isinstance(got, dict) and set(got) == set(want),
                         f"return a dict with the keys {sorted(want)}, not {sorted(got) if isinstance(got, dict) else type(got).__name__}"):
            for key, text in (("loss_bbox", "the L1 distance of the matched pairs' (cx, cy, w, h), summed and divided "
                                            "by the number of objects"),
                              ("loss_giou", "1 - GIoU of the matched pairs (boxes turned into corners), summed and "
                                            "divided by the number of objects"),
                              ("loss_ce", "the cross-entropy of every prediction against its matched label or 'no "
                                          "object' (the last class), a mean weighted by eos_coef for 'no object'")):
                value = got[key]
                if expect_tensor(report, value, f"{key}", shape=()):
                    report.expect(close(value, want[key], atol=1e-5),
                                  f"{key} is {float(value):.5f} but should be {float(want[key]):.5f}: {text}; the "
                                  "matching minimises -w_class p(class) + w_L1 |b - b'|_1 - w_GIoU GIoU with your "
                                  "hungarian_match")
        heavy = report.call(fn, *args, 1.0)
        if isinstance(heavy, dict) and "loss_ce" in heavy:
            report.expect(close(heavy["loss_ce"], expected_detr_loss(*args, eos_coef=1.0)["loss_ce"], atol=1e-5),
                          "with eos_coef = 1 the 'no object' targets weigh as much as the others")
        other = report.call(fn, *args, 0.1, (2, 1, 1))
        if isinstance(other, dict) and "loss_bbox" in other:
            report.expect(all(close(other[k], v, atol=1e-5) for k, v in expected_detr_loss(*args, 0.1, (2, 1, 1)).items()),
                          "with weights (2, 1, 1) the matching changes: weights are (w_class, w_L1, w_GIoU) of the cost")
        logits, boxes, _, _ = args
        empty = report.call(fn, logits, boxes, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))
        if isinstance(empty, dict) and {"loss_ce", "loss_bbox", "loss_giou"} <= set(empty):
            report.expect(float(empty["loss_bbox"]) == 0 and float(empty["loss_giou"]) == 0,
                          "without objects the box terms are 0 (divide by max(G, 1))")
            report.expect(close(empty["loss_ce"], F.cross_entropy(logits, torch.full((8,), 3))),
                          "without objects every prediction's target is 'no object'")
        leaf_logits, leaf_boxes = logits.clone().requires_grad_(True), boxes.clone().requires_grad_(True)
        out = report.call(fn, leaf_logits, leaf_boxes, args[2], args[3])
        report.expect(isinstance(out, dict) and all(isinstance(v, torch.Tensor) and v.requires_grad for v in out.values()),
                      "each term must be differentiable with respect to pred_logits or pred_boxes")
