"""Visible checks for assignment a02-proposals: ``from odcourse.checks import proposals as check``.

Small inputs whose answers can be worked out by hand; each failure is a sentence about the
concept, with a picture of the boxes involved.
"""
from __future__ import annotations

import math

import torch

from . import Report
from .tensors import boxes_picture, call_keeping_inputs, close, expect_tensor, note_if_accepted

SQUARE = [0.0, 0.0, 10.0, 10.0]


def box_area(fn) -> None:
    """Check ``box_area(boxes)`` on boxes whose areas are known."""
    with Report("box_area") as report:
        boxes = torch.tensor([SQUARE, [5.0, 5.0, 8.0, 9.0], [2.0, 3.0, 2.0, 7.0], [1.5, 0.5, 4.0, 1.0]])
        want = torch.tensor([100.0, 12.0, 0.0, 1.25])
        report.illustrate(boxes_picture({"boxes": (boxes, "#4363d8")}, "the boxes of the check"))
        got = call_keeping_inputs(report, fn, boxes)
        if expect_tensor(report, got, "box_area(boxes) for 4 boxes", shape=(4,), dtype=torch.float32):
            report.expect(close(got, want), f"areas {got.tolist()} but expected {want.tolist()}: the area is "
                                            "(x2 - x1) * (y2 - y1), and a box of width 0 has area 0")
        got64 = report.call(fn, boxes.double())
        expect_tensor(report, got64, "the areas of float64 boxes", dtype=torch.float64)
        empty = report.call(fn, torch.zeros(0, 4))
        expect_tensor(report, empty, "box_area of no boxes", shape=(0,))
        small = torch.tensor([[0, 0, 200, 200], [10, 20, 110, 70]], dtype=torch.int16)
        widened = report.call(fn, small)
        if expect_tensor(report, widened, "the areas of int16 boxes", shape=(2,), dtype=torch.int32):
            report.expect(widened.tolist() == [40000, 5000],
                          f"int16 boxes [0, 0, 200, 200] and [10, 20, 110, 70] have areas {widened.tolist()} but "
                          "expected [40000, 5000]: widen int8, uint8 and int16 boxes to int32 before multiplying "
                          "(40000 does not fit in int16, whose largest number is 32767)")
        note_if_accepted(report, fn, (torch.ones(3, 5),), "boxes of shape [3, 5]", torchvision_raises=False)


def box_iou(fn) -> None:
    """Check ``box_iou(boxes1, boxes2)`` on pairs whose IoU is known."""
    with Report("box_iou") as report:
        boxes1 = torch.tensor([SQUARE, [20.0, 0.0, 30.0, 10.0]])
        boxes2 = torch.tensor([SQUARE, [5.0, 0.0, 15.0, 10.0], [2.0, 2.0, 4.0, 4.0], [10.0, 0.0, 20.0, 10.0],
                               [40.0, 40.0, 50.0, 50.0]])
        cases = ["the same box", "half of each box overlaps", "a small box inside", "boxes that only touch",
                 "boxes far apart"]
        want = torch.tensor([[1.0, 50 / 150, 4 / 100, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
        report.illustrate(boxes_picture({"boxes1": (boxes1, "#e6194b"), "boxes2": (boxes2, "#4363d8")},
                                        "boxes1 (red) against boxes2 (blue)"))
        got = call_keeping_inputs(report, fn, boxes1, boxes2)
        if expect_tensor(report, got, "box_iou(boxes1[2], boxes2[5])", shape=(2, 5), dtype=torch.float32):
            for j, case in enumerate(cases):
                report.expect(close(got[0, j], want[0, j]),
                              f"{case}: IoU {got[0, j].item():.4f} but expected {want[0, j].item():.4f}"
                              + (" (the intersection's width and height must be clamped at 0)" if j >= 3 else ""))
            report.expect(close(got[1], want[1]), "row 1 must compare boxes1[1] with every box of boxes2: "
                                                  "entry [i, j] is IoU(boxes1[i], boxes2[j])")
        flipped = report.call(fn, boxes2, boxes1)
        report.expect(isinstance(flipped, torch.Tensor) and close(flipped, want.T),
                      "box_iou(b, a) must be the transpose of box_iou(a, b): IoU is symmetric")
        empty = report.call(fn, torch.zeros(0, 4), boxes2)
        expect_tensor(report, empty, "box_iou of no boxes against 5 boxes", shape=(0, 5))
        small = torch.tensor([[0, 0, 200, 200]], dtype=torch.int16)
        shifted = torch.tensor([[50, 50, 250, 250]], dtype=torch.int16)
        overlap = report.call(fn, small, shifted)
        if expect_tensor(report, overlap, "box_iou of two int16 boxes", shape=(1, 1), dtype=torch.float32):
            report.expect(close(overlap, torch.tensor([[22500 / 57500]])),
                          f"two 200 x 200 int16 boxes overlapping by 150 x 150 have IoU {overlap.item():.4f} but "
                          f"expected {22500 / 57500:.4f}: widen int16 boxes to int32 before subtracting or "
                          "multiplying (their areas overflow int16)")
        note_if_accepted(report, fn, (torch.ones(2, 5), boxes2), "boxes1 of shape [2, 5]",
                         torchvision_raises=False)


def sliding_windows(fn) -> None:
    """Check ``sliding_windows`` on a 4 x 6 image, where every window can be listed by hand."""
    with Report("sliding_windows") as report:
        got = report.call(fn, (4, 6), [2], [1.0], 2)
        want = torch.tensor([[0, 0, 2, 2], [2, 0, 4, 2], [4, 0, 6, 2], [0, 2, 2, 4], [2, 2, 4, 4], [4, 2, 6, 4]],
                            dtype=torch.float32)
        report.illustrate(boxes_picture({"expected": (want, "#3cb44b")}, "2x2 windows, stride 2, on a 4x6 image",
                                        size=(4, 6)))
        if expect_tensor(report, got, "the 2x2 windows of a 4x6 image (stride 2)", shape=(6, 4), dtype=torch.float32):
            report.expect(close(got, want), f"got {got.long().tolist()} but expected {want.long().tolist()}: "
                                            "windows go row by row (y first, then x) and stay inside the image")
        tall = report.call(fn, (4, 6), [2], [2.0], 1)
        if expect_tensor(report, tall, "the windows of ratio 2 (height / width)"):
            report.expect(len(tall) > 0 and bool(((tall[:, 2] - tall[:, 0] == 1) & (tall[:, 3] - tall[:, 1] == 3)).all()),
                          "a window of size 2 and ratio 2 is 1 wide and 3 high (w = floor(2 / sqrt(2) + 0.5))")
            report.expect(len(tall) == 12, f"{len(tall)} windows of 1x3 at stride 1 in a 4x6 image, but there are "
                                           "12: the last window may end exactly at the image's edge")
        both = report.call(fn, (4, 6), [2, 4], [1.0, 0.5], 2)
        if expect_tensor(report, both, "windows of sizes [2, 4] and ratios [1, 0.5]"):
            first = both[:6] if len(both) >= 6 else both
            report.expect(close(first, want), "the windows of the first size and first ratio come first")
            report.expect(len(both) == 6 + 4 + 2 + 1,
                          f"{len(both)} windows but expected 13 (w x h: 6 of 2x2, 4 of 3x1, 2 of 4x4, 1 of 6x3): "
                          "no window may stick out of the image")
        none = report.call(fn, (4, 6), [8], [1.0], 2)
        expect_tensor(report, none, "the windows larger than the image", shape=(0, 4), dtype=torch.float32)


def _blocks():
    """A 6 x 9 image of six 3 x 3 blocks (labels 0 1 2 / 3 4 5) in reds, a green and blues."""
    labels = torch.tensor([[0, 1, 2], [3, 4, 5]]).repeat_interleave(3, 0).repeat_interleave(3, 1)
    colours = [(0.9, 0.1, 0.1), (0.85, 0.15, 0.1), (0.1, 0.8, 0.2), (0.9, 0.12, 0.1), (0.1, 0.2, 0.9),
               (0.15, 0.2, 0.85)]
    image = torch.zeros(3, 6, 9)
    for label, colour in enumerate(colours):
        image[:, labels == label] = torch.tensor(colour)[:, None]
    return image, labels


BLOCK_BOXES = [[0, 0, 3, 3], [3, 0, 6, 3], [6, 0, 9, 3], [0, 3, 3, 6], [3, 3, 6, 6], [6, 3, 9, 6]]
MERGES = {
    ("size",): [[0, 0, 6, 3], [6, 0, 9, 6], [0, 3, 6, 6], [0, 0, 9, 6], [0, 0, 9, 6]],
    ("fill",): [[0, 0, 6, 3], [6, 0, 9, 6], [0, 3, 6, 6], [0, 0, 6, 6], [0, 0, 9, 6]],
    ("colour", "texture", "size", "fill"): [[0, 0, 3, 6], [3, 0, 9, 3], [3, 3, 9, 6], [3, 0, 9, 6], [0, 0, 9, 6]],
}


def selective_search(fn) -> None:
    """Check ``selective_search`` on six blocks, where the merges can be followed by hand."""
    with Report("selective_search") as report:
        image, labels = _blocks()
        for similarities, merged in MERGES.items():
            want = torch.tensor(BLOCK_BOXES + merged, dtype=torch.float32)
            got = call_keeping_inputs(report, fn, image, labels, similarities)
            what = f"with similarities {similarities}"
            if not expect_tensor(report, got, f"the boxes {what}", shape=(11, 4), dtype=torch.float32):
                report.expect(False, "6 regions that all touch give 6 initial boxes and 5 merged boxes")
                continue
            if not report.expect(close(got[:6], want[:6]), f"{what}: the first 6 boxes must be the initial "
                                 "regions' tight boxes, in label order (x2 is the last column + 1)"):
                continue
            if similarities == ("size",):
                report.expect(close(got[6], want[6]), "with size only, all blocks are equally similar: the tie "
                              "goes to the pair with the smallest labels, (0, 1), whose box is [0, 0, 6, 3]")
            wrong = [k for k in range(6, 11) if not close(got[k], want[k])]
            report.expect(not wrong, f"{what}: merge {wrong[0] - 5 if wrong else 0} made box "
                          f"{got[wrong[0]].long().tolist() if wrong else ''} but expected "
                          f"{want[wrong[0]].long().tolist() if wrong else ''}")
            report.illustrate(boxes_picture({"initial": (want[:6], "#4363d8"), "merged": (want[6:], "#e6194b")},
                                            "the six blocks and the expected merges", size=(6, 9)))
        try:
            fn(image, labels, ())
            raised = False
        except ValueError:
            raised = True
        except Exception:  # some other error: still not the ValueError the task asks for
            raised = False
        report.expect(raised, "similarities=() must raise a ValueError")


def proposal_recall(fn) -> None:
    """Check ``proposal_recall`` where the IoU of each ground truth with its best proposal is known."""
    with Report("proposal_recall") as report:
        gt = torch.tensor([SQUARE, [20.0, 20.0, 30.0, 30.0]])
        proposals = torch.tensor([[0.0, 0.0, 10.0, 20.0], [50.0, 50.0, 60.0, 60.0]])  # IoU 0.5 with gt[0]
        report.illustrate(boxes_picture({"ground truth": (gt, "#3cb44b"), "proposals": (proposals, "#e6194b")},
                                        "ground truth (green) and proposals (red)"))
        got = call_keeping_inputs(report, fn, proposals, gt, 0.5)
        report.expect(isinstance(got, float), f"returned {type(got).__name__}; it must be a Python float "
                                              "(use .item())")
        report.expect(isinstance(got, float) and abs(got - 0.5) < 1e-9,
                      f"recall {got} but expected 0.5: gt[0] is found by a proposal with IoU exactly 0.5 "
                      "(>= counts), gt[1] by none, so 1 of 2 ground truths is found")
        strict = report.call(fn, proposals, gt, 0.6)
        report.expect(isinstance(strict, float) and strict == 0.0, f"at IoU 0.6 the recall is 0.0, not {strict}")
        many = report.call(fn, torch.cat([proposals, gt, gt]), gt, 0.5)
        report.expect(isinstance(many, float) and abs(many - 1.0) < 1e-9,
                      f"recall {many} with every ground truth proposed (twice): recall counts ground truths "
                      "found, not proposals that match")
        nothing = report.call(fn, torch.zeros(0, 4), gt, 0.5)
        report.expect(nothing == 0.0, f"with no proposals nothing is found: recall 0.0, not {nothing}")
        undefined = report.call(fn, proposals, torch.zeros(0, 4), 0.5)
        report.expect(isinstance(undefined, float) and math.isnan(undefined),
                      f"with no ground truth the recall is undefined: float('nan'), not {undefined}")
