"""Visible checks for assignment a09-ssd: ``from odcourse.checks import ssd as check``.

torchvision's SSD pieces are the yardstick (DefaultBoxGenerator, SSDMatcher, BoxCoder with weights
(10, 10, 5, 5), smooth_l1_loss, SSD.compute_loss); hard negative mining is checked on a hand-made
example.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from . import Report
from .tensors import boxes_picture, call_keeping_inputs, close, expect_tensor

SSD300 = dict(feature_map_sizes=[38, 19, 10, 5, 3, 1], scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
              aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]], steps=[8, 16, 32, 64, 100, 300])


def _torchvision_default_boxes(feature_map_sizes, scales, aspect_ratios, steps=None, image_size=300, clip=True):
    """DefaultBoxGenerator's boxes (x1, y1, x2, y2) divided by the image size."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.image_list import ImageList

    generator = DefaultBoxGenerator(aspect_ratios, scales=scales, steps=steps, clip=clip)
    maps = [torch.zeros(1, 1, *((s, s) if isinstance(s, int) else s)) for s in feature_map_sizes]
    boxes = generator(ImageList(torch.zeros(1, 3, image_size, image_size), [(image_size, image_size)]), maps)[0]
    return boxes / image_size


def default_boxes(fn) -> None:
    """Check ``default_boxes`` against torchvision's DefaultBoxGenerator."""
    with Report("default_boxes") as report:
        small = dict(feature_map_sizes=[2, 1], scales=[0.2, 0.5, 0.9], aspect_ratios=[[2], [2, 3]])
        got = call_keeping_inputs(report, fn, **small)
        want = _torchvision_default_boxes(**small)
        if expect_tensor(report, got, "the default boxes of a 2 x 2 and a 1 x 1 map", shape=tuple(want.shape),
                         dtype=torch.float32):
            report.illustrate(boxes_picture({"expected": (want[:4], "#3cb44b"), "yours": (got[:4], "#e6194b")},
                                            "the first cell's 4 default boxes (image fractions)"))
            first = [round(v, 4) for v in got[0].tolist()]
            report.expect(close(got[:4], want[:4]), f"the first cell's boxes start with {first}: cell (0, 0) of a 2 x 2 "
                                                    "map is centred at (0.25, 0.25) and has (s_k, s_k), "
                                                    "(s'_k, s'_k), then (s_k sqrt(r), s_k / sqrt(r)) and its transpose")
            report.expect(close(got, want), "the boxes must come map by map, cell by cell (row-major), and in each "
                                            "cell in the order (s_k, s_k), (s'_k, s'_k), then two boxes per ratio, "
                                            "with s'_k = sqrt(s_k s_(k+1))")
        got = report.call(fn, **SSD300, image_size=300)
        want = _torchvision_default_boxes(**SSD300)
        if expect_tensor(report, got, "SSD300's default boxes", shape=(8732, 4)):
            report.expect(close(got, want), "SSD300's boxes differ from torchvision's: with steps the centre of cell "
                                            "(i, j) is ((j + 0.5) step / W, (i + 0.5) step / H); w and h are clipped "
                                            "to [0, 1] before the corners are computed")
        unclipped = report.call(fn, [1], [0.9, 1.5], [[2]], clip=False)
        if expect_tensor(report, unclipped, "a 1 x 1 map with clip=False", shape=(4, 4)):
            report.expect(bool(unclipped[1, 2] > 1.0), "with clip=False the box of scale sqrt(0.9 * 1.5) > 1 sticks "
                                                       "out of the image")


def _iou(a, b):
    from torchvision.ops import box_iou
    return box_iou(a, b)


def match_default_boxes(fn) -> None:
    """Check ``match_default_boxes`` against torchvision's SSDMatcher."""
    from torchvision.models.detection._utils import SSDMatcher

    with Report("match_default_boxes") as report:
        defaults = _torchvision_default_boxes([4], [0.3, 0.5], [[2]])
        gt = torch.tensor([[0.05, 0.05, 0.4, 0.45], [0.55, 0.5, 0.95, 0.9], [0.45, 0.1, 0.5, 0.15]])
        report.illustrate(boxes_picture({"ground truth": (gt, "#e6194b"), "default boxes": (defaults[::4], "#a9a9a9")},
                                        "ground truths (red) and one default box per cell (grey)"))
        got = call_keeping_inputs(report, fn, gt, defaults, 0.5)
        want = SSDMatcher(0.5)(_iou(gt, defaults))
        if expect_tensor(report, got, "the matches of 64 default boxes", shape=(64,), dtype=torch.int64):
            tiny = int((want == 2).nonzero()[0])
            report.expect(int(got[tiny]) == 2, f"default box {tiny} must match the small ground truth 2: every ground "
                                               "truth gets its best default box even below the threshold")
            report.expect(got.tolist() == want.tolist(), f"{int((got != want).sum())} default boxes are matched "
                          "differently: each box takes its best ground truth if that IoU >= the threshold, else -1; "
                          "then each ground truth's best box is forced to it")
        none = report.call(fn, torch.zeros(0, 4), defaults, 0.5)
        if expect_tensor(report, none, "the matches of an image without objects", shape=(64,), dtype=torch.int64):
            report.expect(bool((none == -1).all()), "without ground truth every default box is background (-1)")


def encode_ssd(fn) -> None:
    """Check ``encode_ssd`` against torchvision's BoxCoder with weights (10, 10, 5, 5)."""
    from torchvision.models.detection._utils import BoxCoder

    with Report("encode_ssd") as report:
        defaults = torch.tensor([[0.1, 0.1, 0.3, 0.5], [0.4, 0.4, 0.6, 0.6], [0.0, 0.2, 1.0, 0.4]])
        matched = torch.tensor([[0.12, 0.1, 0.3, 0.45], [0.3, 0.35, 0.7, 0.65], [0.1, 0.25, 0.8, 0.45]])
        got = call_keeping_inputs(report, fn, matched, defaults, (0.1, 0.2))
        want = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(matched, defaults)
        if expect_tensor(report, got, "the offsets of 3 matched boxes", shape=(3, 4), dtype=torch.float32):
            report.expect(close(got[:, :2], want[:, :2]), "dx = (g_cx - d_cx) / d_w / 0.1 and dy = (g_cy - d_cy) / "
                                                          "d_h / 0.1: the centre's shift in default-box widths")
            report.expect(close(got[:, 2:], want[:, 2:]), "dw = log(g_w / d_w) / 0.2 and dh = log(g_h / d_h) / 0.2")
        other = report.call(fn, matched, defaults, (1.0, 1.0))
        if expect_tensor(report, other, "the offsets with variances (1, 1)", shape=(3, 4)):
            report.expect(close(other, BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(matched, defaults)),
                          "the variances divide the offsets: (0.1, 0.2) multiplies them by 10 and 5")


def smooth_l1(fn) -> None:
    """Check ``smooth_l1`` against torch.nn.functional.smooth_l1_loss."""
    with Report("smooth_l1") as report:
        x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.25, 0.999, 1.0, 2.5])
        for beta in (1.0, 0.5, 1 / 9):
            got = call_keeping_inputs(report, fn, x, beta)
            want = F.smooth_l1_loss(x, torch.zeros_like(x), reduction="none", beta=beta)
            if expect_tensor(report, got, f"smooth_l1 with beta {beta:.3g}", shape=(8,), dtype=torch.float32):
                report.expect(close(got, want), f"beta {beta:.3g}: got {[round(v, 4) for v in got.tolist()]} but "
                              f"expected {[round(v, 4) for v in want.tolist()]} (0.5 x^2 / beta where |x| < beta, "
                              "|x| - 0.5 beta elsewhere)")
        flat = report.call(fn, x, 0.0)
        report.expect(isinstance(flat, torch.Tensor) and close(flat, x.abs()), "with beta 0 it is |x| (no division "
                                                                               "by zero)")


def hard_negative_mining(fn) -> None:
    """Check ``hard_negative_mining`` on two images worked out by hand."""
    with Report("hard_negative_mining") as report:
        loss = torch.tensor([[0.9, 0.1, 2.0, 0.5, 3.0, 0.7, 0.2, 0.8],
                             [0.3, 0.6, 0.1, 0.6, 0.2, 0.4, 0.9, 0.5]])
        labels = torch.tensor([[0, 2, 0, 0, 1, 0, 0, 0],
                               [0, 0, 0, 0, 0, 0, 0, 0]])
        got = call_keeping_inputs(report, fn, loss, labels, 3)
        if expect_tensor(report, got, "the negatives of 2 images of 8 default boxes", shape=(2, 8), dtype=torch.bool):
            want = [2, 0, 7, 3, 5, 6]  # two positives: the 6 background boxes with the largest loss
            report.expect(sorted(got[0].nonzero().reshape(-1).tolist()) == sorted(want),
                          f"image 0 has 2 positives, so 3 x 2 = 6 negatives: the background boxes {sorted(want)} with "
                          f"the largest loss; got {got[0].nonzero().reshape(-1).tolist()} (never a positive box)")
            report.expect(not got[1].any(), "an image without positives gets no negatives")
        tied = report.call(fn, torch.tensor([[0.5, 0.5, 0.5, 0.5, 1.0]]), torch.tensor([[0, 0, 0, 0, 1]]), 2)
        if expect_tensor(report, tied, "equal losses", shape=(1, 5), dtype=torch.bool):
            report.expect(tied[0].tolist() == [True, True, False, False, False],
                          "of equal losses the lower index is picked first (a stable sort)")


def _torchvision_loss(cls_logits, loc_pred, labels, loc_targets):
    """torchvision's SSD.compute_loss on precomputed labels and offsets (default boxes matched to themselves)."""
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.models.detection.ssd import SSD

    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    n, count = labels.shape
    anchors = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(count, 1)
    targets, matched = [], []
    for i in range(n):
        positive = labels[i] > 0
        boxes = coder.decode_single(loc_targets[i], anchors)
        targets.append({"boxes": boxes, "labels": labels[i]})
        matched.append(torch.where(positive, torch.arange(count), torch.full((count,), -1)))
    state = types.SimpleNamespace(box_coder=coder, neg_to_pos_ratio=3)
    out = SSD.compute_loss(state, targets, {"cls_logits": cls_logits, "bbox_regression": loc_pred}, [anchors] * n,
                           matched)
    return out["bbox_regression"] + out["classification"]


def ssd_loss(fn) -> None:
    """Check ``ssd_loss`` against torchvision's SSD.compute_loss."""
    with Report("ssd_loss") as report:
        g = torch.Generator().manual_seed(0)
        labels = torch.zeros(2, 30, dtype=torch.int64)
        labels[0, [3, 7]] = torch.tensor([1, 2])
        labels[1, [0, 12, 25]] = torch.tensor([3, 3, 1])
        cls_logits = torch.randn(2, 30, 4, generator=g)
        loc_pred = torch.randn(2, 30, 4, generator=g) * 0.5
        loc_targets = torch.randn(2, 30, 4, generator=g) * 0.5
        got = call_keeping_inputs(report, fn, cls_logits, loc_pred, labels, loc_targets, 3, 1.0)
        want = _torchvision_loss(cls_logits, loc_pred, labels, loc_targets)
        if expect_tensor(report, got, "the loss of 2 images", shape=()):
            report.expect(close(got, want), f"loss {float(got):.5f} but expected {float(want):.5f}: (cross-entropy "
                          "of the positives and of the 3:1 hard negatives + alpha x smooth L1 of the positives' "
                          "offsets) / the number of positives")
        garbage = loc_targets.clone()
        garbage[labels == 0] = 1e4  # offsets of background boxes mean nothing
        again = report.call(fn, cls_logits, loc_pred, labels, garbage, 3, 1.0)
        report.expect(isinstance(again, torch.Tensor) and close(again, want), "the offsets of background boxes must "
                                                                             "not count (only positives are localised)")
        none = report.call(fn, cls_logits, loc_pred, torch.zeros_like(labels), loc_targets, 3, 1.0)
        if expect_tensor(report, none, "the loss without positives", shape=()):
            report.expect(float(none) == 0.0, "with no positives there are no negatives either: the loss is 0")
        leaf = cls_logits.clone().requires_grad_(True)
        out = report.call(fn, leaf, loc_pred, labels, loc_targets, 3, 1.0)
        report.expect(isinstance(out, torch.Tensor) and out.requires_grad, "the loss must be differentiable")
