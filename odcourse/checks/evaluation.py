"""Visible checks for assignment a10-evaluation: ``from odcourse.checks import evaluation as check``.

Small examples worked by hand (each expected value is derived in the message or in a comment, and
the project's tests confirm them with pycocotools' COCOeval).
"""
from __future__ import annotations

import math

import torch

from . import Report
from .tensors import boxes_picture, call_keeping_inputs, expect_tensor

# Three ground truths and five detections of one class. The IoUs of the detections with the
# ground truths (rows: detections, columns: ground truths) are
#   d0: g0 0.81 | d1: g0 0.64, g1 0.25 | d2: g1 0.45 | d3: g2 1.0 | d4: nothing
GT = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [40.0, 40.0, 50.0, 50.0]])
DETECTIONS = torch.tensor([[1.0, 1.0, 10.0, 10.0],     # d0: IoU 81/100 with g0
                           [0.0, 0.0, 8.0, 8.0],       # d1: IoU 64/100 with g0
                           [20.0, 0.0, 24.5, 10.0],    # d2: IoU 45/100 with g1
                           [40.0, 40.0, 50.0, 50.0],   # d3: g2 exactly
                           [70.0, 70.0, 80.0, 80.0]])  # d4: on nothing
SCORES = torch.tensor([0.6, 0.9, 0.5, 0.3, 0.8])


def match_detections(fn) -> None:
    """Check ``match_detections`` on hand-made boxes: order by score, one match per truth, ties
    (as COCOeval: equal IoUs go to the later ground truth), boxes that overlap nothing."""
    with Report("match_detections") as report:
        got = call_keeping_inputs(report, fn, DETECTIONS, SCORES, GT, 0.5)
        report.illustrate(lambda: boxes_picture({"ground truths": (GT, "#3cb44b"),
                                                 "detections": (DETECTIONS, "#e6194b")},
                                                "the check's boxes", size=(90, 90)))
        if expect_tensor(report, got, "the matches of 5 detections", shape=(5,), dtype=torch.int64):
            report.expect(int(got[1]) == 0, f"detection 1 (score 0.9, IoU 0.64 with ground truth 0) got {int(got[1])} "
                                            "instead of 0: the highest score is matched first")
            report.expect(int(got[0]) == -1, f"detection 0 (score 0.6, IoU 0.81 with ground truth 0) got "
                                             f"{int(got[0])} instead of -1: ground truth 0 was already taken by the "
                                             "better-scored detection 1, so detection 0 is a duplicate")
            report.expect(int(got[2]) == -1, f"detection 2 (IoU 0.45 with ground truth 1) got {int(got[2])} instead "
                                             "of -1 at threshold 0.5")
            report.expect(int(got[3]) == 2 and int(got[4]) == -1, f"detections 3 and 4 got {got[3:].tolist()} "
                                                                  "instead of [2, -1]: 3 is exactly on ground truth "
                                                                  "2, 4 overlaps nothing")
        low = report.call(fn, DETECTIONS, SCORES, GT, 0.45)
        if expect_tensor(report, low, "the matches at threshold 0.45", shape=(5,)):
            report.expect(int(low[2]) == 1, "at threshold 0.45 detection 2 (IoU exactly 0.45) must match ground "
                                             "truth 1: a match needs IoU >= the threshold (compare in float64)")
        tied = report.call(fn, torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]),
                           torch.tensor([0.5, 0.5]), torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]),
                           0.5)
        if expect_tensor(report, tied, "two equal detections on two equal ground truths", shape=(2,)):
            report.expect(tied.tolist() == [1, 0], f"two equal detections (equal scores) on two equal ground truths "
                                                   f"got {tied.tolist()} instead of [1, 0]: equal scores keep their "
                                                   "order (detection 0 chooses first), equal IoUs go to the higher "
                                                   "index, the later ground truth, as in COCOeval")
        odd = report.call(fn, torch.tensor([[10.0, 0.0, 0.0, 10.0], [0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 10.0, 10.0]]),
                          torch.tensor([0.9, 0.8, 0.7]), torch.tensor([[0.0, 0.0, 10.0, 10.0]]), 0.5)
        if expect_tensor(report, odd, "the matches of an inverted, a zero-area and a true box", shape=(3,)):
            report.expect(odd.tolist() == [-1, -1, 0], f"an inverted box (x2 < x1) and a box of zero height, both "
                                                       f"scored above a box exactly on the ground truth, got "
                                                       f"{odd.tolist()} instead of [-1, -1, 0]: a box of zero or "
                                                       "negative width or height overlaps nothing (IoU 0)")
        empty = report.call(fn, torch.zeros(0, 4), torch.zeros(0), GT, 0.5)
        report.expect(isinstance(empty, torch.Tensor) and empty.shape == (0,) and empty.dtype == torch.int64,
                      "no detections must give an empty int64 tensor")
        none = report.call(fn, DETECTIONS, SCORES, torch.zeros(0, 4), 0.5)
        report.expect(isinstance(none, torch.Tensor) and none.tolist() == [-1] * 5,
                      "without ground truths every detection is a false positive (-1)")


def average_precision(fn) -> None:
    """Check ``average_precision`` on a curve worked by hand, with both interpolations."""
    with Report("average_precision") as report:
        # G = 4; by decreasing score the detections are TP, FP, TP, TP, FP:
        # precision 1, 1/2, 2/3, 3/4, 3/5 at recall 1/4, 1/4, 1/2, 3/4, 3/4.
        scores = torch.tensor([0.2, 0.9, 0.7, 0.5, 0.4])
        hits = torch.tensor([False, True, False, True, True])
        # voc: 1/4 x 1 + 1/4 x 3/4 + 1/4 x 3/4 = 0.625
        voc = call_keeping_inputs(report, fn, scores, hits, 4, "voc")
        report.expect(isinstance(voc, float), f"average_precision must return a Python float, not {type(voc).__name__}")
        report.expect(isinstance(voc, float) and abs(voc - 0.625) < 1e-9,
                      f"the VOC AP of TP, FP, TP, TP, FP with 4 ground truths is 1/4 x 1 + 1/4 x 3/4 + 1/4 x 3/4 = "
                      f"0.625, not {voc}: the precision at each recall step is the best precision at that recall or "
                      "beyond (3/4 for the second step, not 2/3)")
        # coco: levels 0..0.25 (26 of them) take 1, 0.26..0.75 (50) take 3/4, 0.76..1 (25) take 0
        coco = report.call(fn, scores, hits, 4, "coco")
        report.expect(isinstance(coco, float) and abs(coco - 63.5 / 101) < 1e-9,
                      f"the COCO AP of the same detections is (26 x 1 + 50 x 3/4 + 25 x 0) / 101 = 0.62871, not "
                      f"{coco}: 101 recall levels 0, 0.01, ..., 1, each taking the best precision at a recall >= it, "
                      "0 beyond the largest recall")
        default = report.call(fn, scores, hits, 4)
        report.expect(default == coco, "interpolation must default to 'coco'")
        perfect = report.call(fn, torch.tensor([0.9, 0.8]), torch.tensor([True, True]), 2, "voc")
        report.expect(perfect == 1.0, f"two true positives for two ground truths must give AP 1.0, not {perfect}")
        nothing = report.call(fn, torch.zeros(0), torch.zeros(0, dtype=torch.bool), 3, "coco")
        report.expect(nothing == 0.0, f"no detections for 3 ground truths must give 0.0, not {nothing}")
        undefined = report.call(fn, torch.tensor([0.5]), torch.tensor([False]), 0, "coco")
        report.expect(isinstance(undefined, float) and math.isnan(undefined),
                      f"without ground truths the AP is undefined: return float('nan'), not {undefined}")
        try:
            fn(scores, hits, 4, "eleven points")
            report.expect(False, "an unknown interpolation must raise ValueError")
        except ValueError:
            report.expect(True, "")
        except Exception as error:  # noqa: BLE001 - reported in words
            report.expect(False, f"an unknown interpolation must raise ValueError, not {type(error).__name__}")


def mean_average_precision(fn) -> None:
    """Check ``mean_average_precision`` on two images and two classes worked by hand."""
    with Report("mean_average_precision") as report:
        predictions = [{"boxes": torch.cat([DETECTIONS, torch.tensor([[0.0, 0.0, 10.0, 10.0]])]),
                        "scores": torch.cat([SCORES, torch.tensor([0.7])]),
                        "labels": torch.tensor([1, 1, 1, 1, 1, 2])},
                       {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}]
        targets = [{"boxes": GT, "labels": torch.tensor([1, 1, 1])},
                   {"boxes": torch.tensor([[5.0, 5.0, 25.0, 25.0]]), "labels": torch.tensor([2])}]
        got = call_keeping_inputs(report, fn, predictions, targets)
        if not isinstance(got, dict) or not {"map", "map_50", "map_75"} <= set(got):
            report.expect(False, "mean_average_precision must return a dict with 'map', 'map_50' and 'map_75'")
            return
        # class 1 at 0.5: by score d1 TP, d4 FP, d0 FP, d2 FP, d3 TP with G = 3: COCO AP
        # (34 levels x 1 + 33 levels x 2/5 + 34 x 0) / 101 = 47.2 / 101; class 2: its only
        # detection is in image 0 and its truth in image 1: AP 0. map_50 = (47.2 / 101 + 0) / 2.
        report.expect(isinstance(got["map_50"], float) and abs(got["map_50"] - 47.2 / 202) < 1e-9,
                      f"map_50 is {got['map_50']} instead of 0.23366: class 1 has AP 47.2 / 101 (detections 1 and 3 "
                      "are its true positives), class 2 has AP 0 (its detection is in the wrong image); a detection "
                      "only matches ground truths of its own image and class")
        # class 1 at 0.75: d1 (IoU 0.64) fails, d0 (0.81) now matches g0, d3 matches g2: FP, FP, TP, FP,
        # TP, whose interpolated precision is 2/5 up to recall 2/3 (67 levels): AP 26.8 / 101
        report.expect(abs(got["map_75"] - 26.8 / 202) < 1e-9,
                      f"map_75 is {got['map_75']} instead of 0.13267: at IoU 0.75 detection 1 (IoU 0.64) is a false "
                      "positive and detection 0 (IoU 0.81) takes ground truth 0")
        ten = report.call(fn, predictions, targets, [0.5, 0.75])
        report.expect(abs(ten["map"] - (47.2 + 26.8) / 404) < 1e-9,
                      f"with iou_thresholds [0.5, 0.75] 'map' must be the mean of the two, {(47.2 + 26.8) / 404:.5f}, "
                      f"not {ten['map']}")
        # COCO's area range [0, 1e10]: the inverted detection (scored first) and the inverted ground
        # truth have negative areas and are ignored; the zero-area detection is a false positive.
        # G = 1, ranking TP, FP: AP 1 at every threshold (0.5 if the inverted detection counted as
        # a false positive, 51 / 101 if the inverted ground truth counted in G).
        odd = report.call(fn, [{"boxes": torch.tensor([[60.0, 60.0, 50.0, 70.0], [0.0, 0.0, 10.0, 10.0],
                                                        [80.0, 80.0, 80.0, 90.0]]),
                                "scores": torch.tensor([0.95, 0.9, 0.7]), "labels": torch.tensor([1, 1, 1])}],
                          [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [30.0, 0.0, 20.0, 10.0]]),
                            "labels": torch.tensor([1, 1])}])
        report.expect(isinstance(odd, dict) and abs(odd.get("map", 0.0) - 1.0) < 1e-9,
                      f"an inverted detection scored first, an exact one and a zero-area one, against a ground truth "
                      f"and an inverted one: 'map' is {odd.get('map') if isinstance(odd, dict) else odd} instead of "
                      "1.0 (COCOeval's): boxes outside COCO's area range [0, 1e10] (inverted ones have a negative "
                      "area) are ignored; the inverted ground truth does not count in G (0.505 if it does) and the "
                      "unmatched inverted detection is not a false positive (0.5 if it is)")
        empty = report.call(fn, [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                                  "labels": torch.zeros(0, dtype=torch.int64)}],
                            [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}])
        report.expect(empty.get("map") == -1.0, "with no ground truth at all every value must be -1.0 (COCOeval)")
        try:
            fn(predictions, targets[:1])
            report.expect(False, "predictions and targets of different lengths must raise ValueError")
        except ValueError:
            report.expect(True, "")
        except Exception as error:  # noqa: BLE001 - reported in words
            report.expect(False, f"lists of different lengths must raise ValueError, not {type(error).__name__}")
