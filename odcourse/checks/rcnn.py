"""Visible checks for assignment a03-rcnn: ``from odcourse.checks import rcnn as check``.

The box coder is checked on the slides' three examples (a good proposal, one too far to the left,
one too wide); the rest on inputs small enough to work out by hand.
"""
from __future__ import annotations

import math

import torch

from . import Report
from .tensors import boxes_picture, call_keeping_inputs, close, expect_tensor

PROPOSAL = [0.0, 0.0, 8.0, 8.0]
# (name, ground truth, targets with weights (1, 1, 1, 1)) for the proposal above, as on the slides.
SLIDE_EXAMPLES = [
    ("the proposal is good", [0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 0.0, 0.0]),
    ("the proposal is too far to the left", [2.0, 0.0, 10.0, 8.0], [0.25, 0.0, 0.0, 0.0]),
    ("the proposal is too wide", [4 - 4 * math.exp(-0.125), 0.0, 4 + 4 * math.exp(-0.125), 8.0],
     [0.0, 0.0, -0.125, 0.0]),
]


def _examples(dtype=torch.float32):
    proposals = torch.tensor([PROPOSAL] * len(SLIDE_EXAMPLES), dtype=dtype)
    truths = torch.tensor([g for _, g, _ in SLIDE_EXAMPLES], dtype=dtype)
    targets = torch.tensor([t for _, _, t in SLIDE_EXAMPLES], dtype=dtype)
    return proposals, truths, targets


def encode_boxes(fn) -> None:
    """Check ``encode_boxes`` on the slides' three examples, with weights, and with no boxes."""
    with Report("encode_boxes") as report:
        proposals, truths, targets = _examples()
        report.illustrate(boxes_picture({"proposal": (proposals[:1], "#ffffff"), "truths": (truths, "#3cb44b")},
                                        "the proposal and the three ground truths of the slides"))
        got = call_keeping_inputs(report, fn, truths, proposals)
        if expect_tensor(report, got, "encode_boxes of 3 boxes", shape=(3, 4), dtype=torch.float32):
            for row, (name, _, want) in enumerate(SLIDE_EXAMPLES):
                report.expect(close(got[row], torch.tensor(want)),
                              f"{name}: targets {[round(v, 4) for v in got[row].tolist()]} but expected {want} "
                              "(tx = (Gx - Px) / Pw with centres; tw = log(Gw / Pw))")
        weighted = report.call(fn, truths, proposals, weights=(10.0, 10.0, 5.0, 5.0))
        report.expect(close(weighted, targets * torch.tensor([10.0, 10.0, 5.0, 5.0])),
                      "with weights (10, 10, 5, 5) each target is multiplied by its weight")
        f64 = report.call(fn, truths.double(), proposals.double())
        expect_tensor(report, f64, "encode_boxes of float64 boxes", dtype=torch.float64)
        empty = report.call(fn, torch.zeros(0, 4), torch.zeros(0, 4))
        expect_tensor(report, empty, "encode_boxes of no boxes", shape=(0, 4))


def decode_boxes(fn) -> None:
    """Check ``decode_boxes``: it undoes the slides' examples, divides by the weights and clips dw, dh."""
    with Report("decode_boxes") as report:
        proposals, truths, targets = _examples()
        got = call_keeping_inputs(report, fn, targets, proposals)
        if expect_tensor(report, got, "decode_boxes of 3 offsets", shape=(3, 4), dtype=torch.float32):
            for row, (name, truth, _) in enumerate(SLIDE_EXAMPLES):
                report.expect(close(got[row], torch.tensor(truth)),
                              f"{name}: decoded {[round(v, 4) for v in got[row].tolist()]} but expected "
                              f"{[round(v, 4) for v in truth]}")
        weighted = report.call(fn, targets * torch.tensor([10.0, 10.0, 5.0, 5.0]), proposals,
                               weights=(10.0, 10.0, 5.0, 5.0))
        report.expect(close(weighted, truths), "with weights, divide each offset by its weight before using it")
        wild = torch.tensor([[0.0, 0.0, 10.0, -10.0]])
        clipped = report.call(fn, wild, torch.tensor([PROPOSAL]))
        scale = 1000.0 / 16
        want = torch.tensor([[4 - 4 * scale, 4 - 4 * math.exp(-10.0), 4 + 4 * scale, 4 + 4 * math.exp(-10.0)]])
        report.illustrate(boxes_picture({"proposal": (torch.tensor([PROPOSAL]), "#4363d8"),
                                         "expected": (truths, "#3cb44b")}, "decoding the slides' examples"))
        report.expect(close(clipped, want, atol=1e-3, rtol=1e-5),
                      "dw = 10 must be clipped to log(1000 / 16) (the box becomes 62.5 times wider), "
                      "while dh = -10 is not clipped (only large values are)")
        empty = report.call(fn, torch.zeros(0, 4), torch.zeros(0, 4))
        expect_tensor(report, empty, "decode_boxes of no boxes", shape=(0, 4))


def warp_region(fn) -> None:
    """Check ``warp_region`` on a 4 x 4 image of the numbers 0..15."""
    with Report("warp_region") as report:
        image = torch.arange(16.0).reshape(1, 4, 4)
        same = call_keeping_inputs(report, fn, image, torch.tensor([0.0, 0.0, 4.0, 4.0]), 4)
        if expect_tensor(report, same, "warp_region of the whole 4x4 image to size 4", shape=(1, 4, 4),
                         dtype=torch.float32):
            report.expect(close(same, image), "warping the whole image to its own size must give the image back: "
                                              "sample at pixel centres, x = x1 + (c + 0.5) (x2 - x1) / w - 0.5")
        zoom = report.call(fn, image, torch.tensor([0.0, 0.0, 2.0, 2.0]), 4)
        want = torch.tensor([[[0.0, 0.25, 0.75, 1.25], [1.0, 1.25, 1.75, 2.25], [3.0, 3.25, 3.75, 4.25],
                              [5.0, 5.25, 5.75, 6.25]]])
        report.expect(close(zoom, want), f"the top-left 2x2 pixels blown up to 4x4 gave {zoom.tolist()}, "
                                         f"expected {want.tolist()} (bilinear, coordinates clamped to the image)")
        outside = report.call(fn, image, torch.tensor([-2.0, 1.0, 3.0, 3.5]), (2, 3))
        want = torch.tensor([[[4.5, 4.5, 6.1666665], [9.5, 9.5, 11.166667]]])
        report.expect(close(outside, want, atol=1e-4), f"a box sticking out of the image, to size (2, 3), gave "
                      f"{outside.tolist() if isinstance(outside, torch.Tensor) else outside}, expected "
                      f"{want.tolist()}: size is (h, w), and outside points take the nearest border value")
        colour = report.call(fn, torch.rand(3, 10, 12, dtype=torch.float64), torch.tensor([1.5, 2.0, 9.0, 7.5]),
                             (5, 7))
        expect_tensor(report, colour, "a 3-channel float64 image warped to (5, 7)", shape=(3, 5, 7),
                      dtype=torch.float64)


def fit_box_regressor(fn) -> None:
    """Check ``fit_box_regressor`` on data that a linear function fits exactly."""
    with Report("fit_box_regressor") as report:
        g = torch.Generator().manual_seed(0)
        features = torch.randn(50, 3, generator=g, dtype=torch.float64) + 5.0
        weight = torch.tensor([[1.0, 0.0, -2.0, 0.5], [0.0, 3.0, 1.0, 0.0], [2.0, -1.0, 0.0, 1.0]],
                              dtype=torch.float64)
        bias = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
        targets = features @ weight + bias
        got = call_keeping_inputs(report, fn, features, targets, 0.0)
        if report.expect(isinstance(got, tuple) and len(got) == 2, "must return a pair (weight, bias)"):
            w, b = got
            if expect_tensor(report, w, "weight", shape=(3, 4), dtype=torch.float64) and \
                    expect_tensor(report, b, "bias", shape=(4,), dtype=torch.float64):
                report.expect(close(w, weight, atol=1e-8) and close(b, bias, atol=1e-8),
                              "with lam = 0 and targets that are exactly features @ W + b, the fit must "
                              "recover W and b")
        constant = report.call(fn, features, torch.full((50, 4), 7.0, dtype=torch.float64), 100.0)
        if isinstance(constant, tuple) and len(constant) == 2:
            report.expect(close(constant[0], torch.zeros(3, 4, dtype=torch.float64), atol=1e-8)
                          and close(constant[1], torch.full((4,), 7.0, dtype=torch.float64), atol=1e-8),
                          "constant targets 7 must give weight 0 and bias 7 for any lam: the bias is not "
                          "regularised")
        shrunk = report.call(fn, features, targets, 1e6)
        if isinstance(shrunk, tuple) and len(shrunk) == 2:
            report.expect(float(shrunk[0].abs().max()) < 0.05, "a very large lam must shrink the weights "
                                                               "towards 0")
        try:
            fn(features, targets, -1.0)
            raised = False
        except ValueError:
            raised = True
        except Exception:  # any other error is not the ValueError the task asks for
            raised = False
        report.expect(raised, "a negative lam must raise a ValueError")


def train_linear_svm(fn) -> None:
    """Check ``train_linear_svm`` on 60 points of 2 features and the objective it reaches."""
    with Report("train_linear_svm") as report:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(60, 2, generator=g, dtype=torch.float64) + torch.tensor([4.0, 4.0], dtype=torch.float64)
        labels = (x[:, 0] + x[:, 1] > 8).long()
        got = call_keeping_inputs(report, fn, x, labels, 0.01)
        if not report.expect(isinstance(got, tuple) and len(got) == 2, "must return a pair (weight, bias)"):
            return
        w, b = got
        if not (expect_tensor(report, w, "weight", shape=(2,), dtype=torch.float64)
                and expect_tensor(report, b, "bias", shape=(), dtype=torch.float64)):
            return
        y = labels * 2 - 1
        objective = (0.005 * w @ w + (1 - y * (x @ w + b)).clamp(min=0).mean()).item()
        best = 0.18694  # the smallest J for these points, by a precise solver
        report.expect(objective <= best * 1.02 + 1e-3,
                      f"the objective J reached is {objective:.4f} but {best:.4f} is possible: train longer or "
                      "with a better step size (and check the labels are turned into -1 and +1)")
        accuracy = ((x @ w + b > 0).long() == labels).double().mean().item()
        report.expect(accuracy >= 0.9, f"only {accuracy:.0%} of the training points are on the right side "
                                       "of w.x + b = 0")
