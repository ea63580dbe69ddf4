"""Visible checks for assignment a08-yolo: ``from odcourse.checks import yolo as check``.

torchvision's ``nms`` and ``batched_nms`` are the yardstick for suppression; the YOLO targets, loss
and decoding are checked on small grids whose answers are worked out in the check itself, one
term of the loss at a time.
"""
from __future__ import annotations

import torch

from . import Report
from .tensors import boxes_picture, call_keeping_inputs, close, expect_tensor, note_if_accepted

# The slides' post-processing example, redrawn: two people and a horse, with overlapping detections.
SLIDE_BOXES = torch.tensor([[10.0, 20.0, 60.0, 120.0], [14.0, 24.0, 64.0, 118.0], [8.0, 30.0, 55.0, 125.0],
                            [70.0, 22.0, 118.0, 122.0], [74.0, 18.0, 121.0, 119.0], [30.0, 60.0, 160.0, 140.0],
                            [36.0, 66.0, 158.0, 144.0], [120.0, 10.0, 150.0, 40.0]])
SLIDE_SCORES = torch.tensor([0.92, 0.78, 0.64, 0.88, 0.71, 0.83, 0.60, 0.05])


def _torchvision_nms(boxes, scores, threshold):
    from torchvision.ops import nms
    return nms(boxes, scores, threshold)


def _torchvision_batched_nms(boxes, scores, idxs, threshold):
    from torchvision.ops import batched_nms
    return batched_nms(boxes, scores, idxs, threshold)


def _kept_picture(boxes, keep, title):
    kept = torch.zeros(len(boxes), dtype=torch.bool)
    kept[keep] = True
    return boxes_picture({"kept": (boxes[kept], "#3cb44b"), "suppressed": (boxes[~kept], "#a9a9a9")}, title)


def _same_indices(report, got, want, what, hint) -> None:
    if expect_tensor(report, got, what, shape=tuple(want.shape), dtype=torch.int64):
        if set(got.tolist()) == set(want.tolist()) and got.tolist() != want.tolist():
            report.expect(False, f"{what}: kept {got.tolist()} but expected {want.tolist()}: results must be ordered "
                                 "by decreasing score")
        else:
            report.expect(got.tolist() == want.tolist(), f"{what}: kept {got.tolist()} but expected "
                                                         f"{want.tolist()} ({hint})")


def nms(fn) -> None:
    """Check ``nms(boxes, scores, iou_threshold)`` against torchvision.ops.nms."""
    with Report("nms") as report:
        for threshold in (0.5, 0.3, 0.8):
            want = _torchvision_nms(SLIDE_BOXES, SLIDE_SCORES, threshold)
            report.illustrate(_kept_picture(SLIDE_BOXES, want, f"expected at IoU threshold {threshold}: kept in "
                                                               "green, suppressed in grey"))
            got = call_keeping_inputs(report, fn, SLIDE_BOXES, SLIDE_SCORES, threshold)
            _same_indices(report, got, want, f"the slides' detections at threshold {threshold}",
                          "take the highest score, drop every box whose IoU with it is > the threshold, repeat")
        touching = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 20.0]])
        got = report.call(fn, touching, torch.tensor([0.9, 0.8, 0.7]), 0.5)
        _same_indices(report, got, torch.tensor([0, 1, 2]), "boxes with IoU exactly 0.5 at threshold 0.5",
                      "a box is dropped only when its IoU is strictly greater than the threshold")
        tied = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [1.0, 1.0, 11.0, 11.0]])
        got = report.call(fn, tied, torch.tensor([0.5, 0.7, 0.5]), 0.5)
        _same_indices(report, got, torch.tensor([1, 0]), "equal scores", "of two equal scores the lower index "
                                                                          "comes first (a stable sort)")
        empty = report.call(fn, torch.zeros(0, 4), torch.zeros(0), 0.5)
        expect_tensor(report, empty, "nms of no boxes", shape=(0,), dtype=torch.int64)
        large = torch.tensor([[285.35, 185.58, 1193.51, 851.46], [285.15, 188.74, 1192.50, 851.07],
                              [279.24, 197.98, 1189.47, 849.20]]).half()
        got = report.call(fn, large, torch.tensor([0.637, 0.757, 0.397]).half(), 0.2)
        _same_indices(report, got, torch.tensor([1]), "three float16 boxes of about 900 x 650 pixels, nearly "
                      "the same box", "compute the IoU of float16 boxes in float32: their areas (about 600,000) are "
                      "beyond float16's largest number, 65504, and inf / inf = nan suppresses nothing")
        note_if_accepted(report, fn, (torch.rand(3, 5), torch.rand(3), 0.5), "boxes of shape [3, 5]")
        note_if_accepted(report, fn, (torch.rand(3, 4), torch.rand(4), 0.5), "3 boxes and 4 scores")


def batched_nms(fn) -> None:
    """Check ``batched_nms(boxes, scores, idxs, iou_threshold)`` against torchvision.ops.batched_nms."""
    with Report("batched_nms") as report:
        labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
        want = _torchvision_batched_nms(SLIDE_BOXES, SLIDE_SCORES, labels, 0.5)
        report.illustrate(_kept_picture(SLIDE_BOXES, want, "expected: kept in green, suppressed in grey"))
        got = call_keeping_inputs(report, fn, SLIDE_BOXES, SLIDE_SCORES, labels, 0.5)
        _same_indices(report, got, want, "the slides' detections with classes [0, 0, 0, 0, 0, 1, 1, 2]",
                      "boxes of different classes never suppress each other; the result is ordered by score")
        same_place = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
        got = report.call(fn, same_place, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 2, 1]), 0.5)
        _same_indices(report, got, torch.tensor([0, 1]), "three identical boxes of classes [1, 2, 1]",
                      "only the box of another class survives next to the best one")
        empty = report.call(fn, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
        expect_tensor(report, empty, "batched_nms of no boxes", shape=(0,), dtype=torch.int64)
        note_if_accepted(report, fn, (torch.rand(3, 4), torch.rand(3), torch.tensor([0, 1]), 0.5),
                         "3 boxes and 2 categories")


def yolo_targets(fn) -> None:
    """Check ``yolo_targets(boxes, labels, S, C)`` on a 3 x 3 grid whose targets are worked out by hand."""
    with Report("yolo_targets") as report:
        # Centres (0.5, 0.5) -> cell (1, 1); (0.2, 0.8) -> cell (2, 0); (0.55, 0.45) -> cell (1, 1) again.
        boxes = torch.tensor([[0.3, 0.2, 0.7, 0.8], [0.1, 0.7, 0.3, 0.9], [0.5, 0.4, 0.6, 0.5]])
        labels = torch.tensor([2, 0, 1])
        report.illustrate(boxes_picture({"objects": (boxes * 3, "#e6194b")}, "the objects on the 3 x 3 grid "
                                        "(in cell units)", size=(3, 3)))
        got = call_keeping_inputs(report, fn, boxes, labels, 3, 4)
        if not expect_tensor(report, got, "yolo_targets for S = 3, C = 4", shape=(3, 3, 9), dtype=torch.float32):
            return
        centre = torch.tensor([0.5, 0.5, 0.4, 0.6, 1.0, 0.0, 0.0, 1.0, 0.0])
        corner = torch.tensor([0.6, 0.4, 0.2, 0.2, 1.0, 1.0, 0.0, 0.0, 0.0])
        report.expect(close(got[1, 1], centre), f"cell (row 1, column 1) holds {got[1, 1].tolist()} but should hold "
                                                f"{centre.tolist()}: x = cx S - j, y = cy S - i, w, h of the box, 1, "
                                                "then the one-hot class; and the first object wins a shared cell")
        report.expect(close(got[2, 0], corner), f"cell (row 2, column 0) holds {got[2, 0].tolist()} but should hold "
                                                f"{corner.tolist()}: the centre (0.2, 0.8) lies in row "
                                                "floor(0.8 * 3) = 2, column floor(0.2 * 3) = 0")
        others = got.clone()
        others[1, 1] = 0
        others[2, 0] = 0
        report.expect(not others.any(), "every cell without an object's centre must be all zeros")
        edge = report.call(fn, torch.tensor([[0.8, 0.8, 1.0, 1.0]]), torch.tensor([0]), 2, 1)
        if expect_tensor(report, edge, "an object touching the image's bottom-right corner", shape=(2, 2, 6)):
            report.expect(close(edge[1, 1, :2], torch.tensor([0.8, 0.8])),
                          "a centre at 0.9 on a 2 x 2 grid lies in cell 1 with offset 0.9 * 2 - 1 = 0.8")
        empty = report.call(fn, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 4, 3)
        if expect_tensor(report, empty, "yolo_targets of an image without objects", shape=(4, 4, 8)):
            report.expect(not empty.any(), "an image without objects has an all-zero target")


def _cell_pred(boxes, classes):
    """One cell's prediction: B boxes (x, y, w, h, confidence) then the class probabilities."""
    return torch.tensor([v for box in boxes for v in box] + list(classes), dtype=torch.float64)


def yolo_loss(fn) -> None:
    """Check ``yolo_loss`` on a 2 x 2 grid, one term of the loss at a time."""
    with Report("yolo_loss") as report:
        S, C = 2, 2
        target = torch.zeros(1, S, S, 5 + C, dtype=torch.float64)
        target[0, 0, 1] = torch.tensor([0.5, 0.5, 0.36, 0.25, 1.0, 0.0, 1.0], dtype=torch.float64)
        truth = [0.5, 0.5, 0.36, 0.25, 1.0]
        empty_cell = _cell_pred([[0.5, 0.5, 0.1, 0.1, 0.0], [0.5, 0.5, 0.1, 0.1, 0.0]], [0.5, 0.5])

        def predict(object_cell, empty=empty_cell):
            pred = empty.repeat(1, S, S, 1).clone()
            pred[0, 0, 1] = object_cell
            return pred

        perfect = predict(_cell_pred([[0.3, 0.3, 0.04, 0.04, 0.0], truth], [0.0, 1.0]))
        cases = [
            ("a perfect prediction", perfect, 0.0, "the responsible box equals the target, the other box and the "
             "empty cells have confidence 0, the classes are right: the loss is 0"),
            ("confidences 0.4 in the three empty cells", predict(perfect[0, 0, 1], _cell_pred(
                [[0.5, 0.5, 0.1, 0.1, 0.4], [0.5, 0.5, 0.1, 0.1, 0.4]], [0.5, 0.5])), 0.5 * 6 * 0.16,
             "every box of a cell without an object adds lambda_noobj * confidence^2"),
            ("an error in x of 0.1 and a width of 0.25 instead of 0.36", predict(_cell_pred(
                [[0.3, 0.3, 0.04, 0.04, 0.0], [0.6, 0.5, 0.25, 0.25, 1.0]], [0.0, 1.0])),
             5.0 * (0.01 + (0.5 - 0.6) ** 2), "the responsible box adds lambda_coord * ((x - x^)^2 + (y - y^)^2 + "
             "(sqrt(w) - sqrt(w^))^2 + (sqrt(h) - sqrt(h^))^2): here 5 * (0.01 + 0.01)"),
            ("the responsible box's confidence 0.7 and the other's 0.6", predict(_cell_pred(
                [[0.3, 0.3, 0.04, 0.04, 0.6], truth[:4] + [0.7]], [0.0, 1.0])), 0.09 + 0.5 * 0.36,
             "the responsible box adds (confidence - 1)^2, the other box of the object's cell lambda_noobj * "
             "confidence^2"),
            ("class probabilities [0.3, 0.6]", predict(_cell_pred([[0.3, 0.3, 0.04, 0.04, 0.0], truth],
                                                                  [0.3, 0.6])), 0.09 + 0.16,
             "the object's cell adds the squared errors of its class probabilities (once per cell, not per box)"),
            ("the better box second", predict(_cell_pred([truth[:4] + [0.0], [0.4, 0.4, 0.2, 0.2, 1.0]], [0.0, 1.0])),
             1.0 + 0.5 * 1.0, "the responsible box is the one with the largest IoU with the target (here box 0, "
             "which equals it), whatever its confidence: it adds (0 - 1)^2, and box 1 lambda_noobj * 1^2"),
        ]
        for what, pred, want, hint in cases:
            got = call_keeping_inputs(report, fn, pred, target, 5.0, 0.5)
            if expect_tensor(report, got, f"the loss of {what}", shape=()):
                report.expect(close(got, torch.tensor(want, dtype=torch.float64), atol=1e-9),
                              f"{what}: loss {float(got):.4f} but expected {want:.4f} ({hint})")
        batch = torch.cat([perfect, cases[1][1]])
        got = report.call(fn, batch, target.repeat(2, 1, 1, 1), 5.0, 0.5)
        if expect_tensor(report, got, "the loss of a batch of 2", shape=()):
            report.expect(close(got, torch.tensor(0.5 * 6 * 0.16 / 2, dtype=torch.float64), atol=1e-9),
                          "the loss is summed over the batch's cells and divided by the batch size N")
        leaf = cases[2][1].clone().requires_grad_(True)
        out = report.call(fn, leaf, target, 5.0, 0.5)
        if report.expect(isinstance(out, torch.Tensor) and out.requires_grad, "the loss must be differentiable"):
            grad, = torch.autograd.grad(out, leaf)
            report.expect(bool(grad[0, 0, 1, 0] == 0 and grad[0, 0, 1, 5] != 0),
                          "with B = 2, box 1 (entries 5 to 9 of the cell) is responsible here: its x gets a gradient, "
                          "box 0's coordinates none")


def decode_yolo(fn) -> None:
    """Check ``decode_yolo`` on a 2 x 2 grid with B = 2 and C = 2."""
    with Report("decode_yolo") as report:
        pred = torch.zeros(2, 2, 12)
        pred[0, 0] = torch.tensor([0.5, 0.5, 0.4, 0.4, 0.9, 0.6, 0.5, 0.4, 0.4, 0.5, 0.2, 0.8])
        pred[1, 1] = torch.tensor([0.2, 0.6, 0.3, 0.2, 0.1, 0.5, 0.5, 0.3, 0.2, 0.8, 0.7, 0.3])
        pred[0, 1] = torch.tensor([0.5, 0.5, 0.4, 0.4, 0.5, 0.5, 0.5, 0.4, 0.4, 0.3, 0.5, 0.5])
        # Candidates (score = confidence x best class probability, label = that class):
        # cell (0, 0): box 0 at centre (0.25, 0.25), 0.9 * 0.8 = 0.72, class 1; box 1 at (0.3, 0.25), 0.4, class 1
        # cell (0, 1): boxes at (0.75, 0.25), 0.25 and 0.15, class 0 (the first of two equal probabilities)
        # cell (1, 1): box 0 at (0.6, 0.8), 0.07; box 1 at (0.75, 0.75), 0.56, class 0
        boxes = torch.tensor([[0.05, 0.05, 0.45, 0.45], [0.6, 0.65, 0.9, 0.85], [0.55, 0.05, 0.95, 0.45]])
        scores = torch.tensor([0.72, 0.56, 0.25])
        labels = torch.tensor([1, 0, 0])
        got = call_keeping_inputs(report, fn, pred, 0.1, 0.5, 2)
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            report.expect(False, "decode_yolo must return a tuple (boxes, scores, labels)")
            return
        got_boxes, got_scores, got_labels = got
        ok = expect_tensor(report, got_boxes, "the boxes", shape=(3, 4), dtype=torch.float32)
        ok &= expect_tensor(report, got_scores, "the scores", shape=(3,), dtype=torch.float32)
        ok &= expect_tensor(report, got_labels, "the labels", shape=(3,), dtype=torch.int64)
        if ok:
            report.illustrate(boxes_picture({"expected": (boxes * 2, "#3cb44b"), "got": (got_boxes * 2, "#e6194b")},
                                            "expected (green) and your (red) boxes, in cell units", size=(2, 2)))
            report.expect(close(got_scores, scores), f"scores {got_scores.tolist()} but expected {scores.tolist()}: "
                          "score = confidence x the largest class probability; keep scores > conf_threshold; NMS "
                          "per class; highest score first")
            report.expect(close(got_boxes, boxes), "the boxes differ: centre ((j + x) / S, (i + y) / S), corners "
                                                   "centre -/+ (w / 2, h / 2), clipped to [0, 1]")
            report.expect(got_labels.tolist() == labels.tolist(),
                          f"labels {got_labels.tolist()} but expected {labels.tolist()}: the class of the largest "
                          "probability (the first of equal ones)")
        none = report.call(fn, pred, 0.95, 0.5, 2)
        if isinstance(none, (tuple, list)) and len(none) == 3:
            expect_tensor(report, none[0], "the boxes above a threshold nothing reaches", shape=(0, 4))
