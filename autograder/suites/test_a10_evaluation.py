"""Hidden suite for a10-evaluation: matching detections to ground truths, average precision with
VOC's and COCO's interpolations, and COCO's mean average precision."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.detections import data_set, scene
from autograder.suites.support import (
    GRADING,
    expect_close,
    expect_fast,
    expect_unchanged,
    generator,
    noncontiguous,
)

FUNCTIONS = {"match_detections": "match-detections", "average_precision": "average-precision",
             "mean_average_precision": "mean-average-precision"}
EVALUATORS = ["pycocotools", "torchmetrics", "faster_coco_eval", "torchvision.ops", "sklearn.metrics"]
BANNED = {"match_detections": EVALUATORS, "average_precision": EVALUATORS, "mean_average_precision": EVALUATORS}

MATCH_HINT = ("take the detections by decreasing score (equal scores: lower index first); each takes, among the "
              "ground truths not matched yet with IoU >= the threshold, the one of largest IoU (equal IoUs: the "
              "higher index, as COCOeval), else -1; the result is in the order of the input detections")
AP_HINT = ("sort by decreasing score (stable), precision TP/(TP+FP) and recall TP/G after each detection, the "
           "interpolated precision at recall r is the best precision at any recall >= r; 'voc' sums "
           "(recall step) x (interpolated precision), 'coco' averages it over COCO_RECALL_LEVELS, 0 beyond the "
           "largest recall")
MAP_HINT = ("per class and IoU threshold: the 100 best-scored detections of the class in each image, matched "
            "within their image, gathered in image order, COCO-interpolated AP with G = the class's ground truths "
            "in the whole set; classes without ground truths left out; 'map' averages over classes and thresholds; "
            "boxes outside COCO's area range [0, 1e10] (inverted ones) are ignored as the statement says")


# match_detections -----------------------------------------------------------------------------

@pytest.mark.function("match_detections")
@pytest.mark.points(3)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(0, 12), st.integers(0, 30), st.sampled_from([0.3, 0.5, 0.75]),
       st.booleans(), st.sampled_from([torch.float32, torch.float64]))
def test_match_detections_of_random_scenes(student, reference, device, seed, truths, detections, threshold,
                                           quantised, dtype):
    boxes, scores, gt = (t.to(device) for t in scene(generator(seed), truths, detections, quantised, dtype))
    got = student.call("match_detections", boxes, scores, gt, threshold,
                       failure=f"match_detections failed on {detections} detections and {truths} ground truths "
                               f"({{error}}): {MATCH_HINT}")
    what = (f"the matches of {detections} detections to {truths} ground truths at IoU {threshold}"
            + (" (boxes on a grid, tied scores)" if quantised else ""))
    expect_close(got, reference.match_detections(boxes, scores, gt, threshold), what, MATCH_HINT, atol=0)


@pytest.mark.function("match_detections")
@pytest.mark.points(2)
def test_match_detections_order_duplicates_and_thresholds(student, reference, device):
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]], device=device)
    # the better-overlapping detection comes second by score: it must not take ground truth 0
    late = torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 10.0, 10.0], [21.0, 0.0, 30.0, 10.0]], device=device)
    scores = torch.tensor([0.9, 0.8, 0.95], device=device)
    expect_close(student.match_detections(late, scores, gt, 0.5), reference.match_detections(late, scores, gt, 0.5),
                 "a detection overlapping a ground truth better than an earlier, better-scored one",
                 "a ground truth goes to the first detection by score that reaches the threshold; a later detection "
                 "cannot take it back, it is a false positive (-1)", atol=0)
    expect_unchanged(student, "match_detections")
    # IoU exactly 0.5: [0, 0, 10, 5] covers half of ground truth 0
    half = torch.tensor([[0.0, 0.0, 10.0, 5.0]], device=device)
    for threshold in (0.5, 0.5000001):
        expect_close(student.match_detections(half, torch.ones(1, device=device), gt, threshold),
                     reference.match_detections(half, torch.ones(1, device=device), gt, threshold),
                     f"a detection of IoU exactly 0.5 at threshold {threshold}",
                     "a match needs IoU >= the threshold (compare in float64)", atol=0)
    # a detection between two ground truths of equal IoU, and equal scores
    both = torch.tensor([[5.0, 0.0, 25.0, 10.0], [5.0, 0.0, 25.0, 10.0]], device=device)
    ties = torch.tensor([[0.0, 0.0, 20.0, 10.0], [10.0, 0.0, 30.0, 10.0]], device=device)
    expect_close(student.match_detections(both, torch.full((2,), 0.5, device=device), ties, 0.3),
                 reference.match_detections(both, torch.full((2,), 0.5, device=device), ties, 0.3),
                 "two equal detections with equal scores between two ground truths of equal IoU",
                 "equal scores keep the input order; equal IoUs go to the later (higher-index) ground truth, as in "
                 "COCOeval", atol=0)


@pytest.mark.function("match_detections")
@pytest.mark.points(1)
def test_match_detections_empty_and_noncontiguous(student, reference, device):
    boxes, scores, gt = (t.to(device) for t in scene(generator(3), 6, 20, False))
    for what, args in (("no detections", (boxes[:0], scores[:0], gt)), ("no ground truths", (boxes, scores, gt[:0])),
                       ("neither", (boxes[:0], scores[:0], gt[:0]))):
        expect_close(student.match_detections(*args, 0.5), reference.match_detections(*args, 0.5),
                     f"the matches with {what}", "no detections: an empty int64 tensor; no ground truths: every "
                                                 "detection is -1", atol=0)
    odd, odd_scores, odd_gt = (t.to(device) for t in scene(generator(4), 8, 30, False, degenerate=True))
    expect_close(student.match_detections(odd, odd_scores, odd_gt, 0.5),
                 reference.match_detections(odd, odd_scores, odd_gt, 0.5),
                 "the matches of a scene with inverted and zero-area boxes",
                 "a box of zero or negative width or height overlaps nothing: its IoU with any box is 0", atol=0)
    expect_close(student.match_detections(noncontiguous(boxes), scores, noncontiguous(gt), 0.5),
                 reference.match_detections(boxes, scores, gt, 0.5), "the matches of boxes stored non-contiguously",
                 MATCH_HINT, atol=0)


# average_precision ----------------------------------------------------------------------------

def detections_of_one_class(seed: int, count: int, truths: int, tied: bool):
    g = generator(seed)
    scores = torch.rand(count, generator=g, dtype=torch.float64)
    if tied:
        scores = (scores * 3).round() / 3
    hits = torch.rand(count, generator=g) < 0.6
    hits[hits.cumsum(0) > truths] = False  # at most one true positive per ground truth
    return scores, hits


@pytest.mark.function("average_precision")
@pytest.mark.points(4)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(0, 60), st.integers(1, 40), st.booleans(),
       st.sampled_from(["voc", "coco"]), st.sampled_from([torch.float32, torch.float64]))
def test_average_precision_of_random_curves(student, reference, device, seed, count, truths, tied, interpolation,
                                            dtype):
    scores, hits = detections_of_one_class(seed, count, truths, tied)
    args = (scores.to(dtype).to(device), hits.to(device), truths, interpolation)
    got = student.call("average_precision", *args,
                       failure=f"average_precision failed on {count} detections ({{error}}): {AP_HINT}")
    want = reference.average_precision(*args)
    expect(isinstance(got, float), f"average_precision must return a Python float, not {type(got).__name__}")
    expect(abs(got - want) <= 1e-9, f"the {interpolation} AP of {count} detections for {truths} ground truths"
                                    + (" (tied scores)" if tied else "") + f" is off by {abs(got - want):.2g}; "
                                    + AP_HINT)
    expect_unchanged(student, "average_precision")


@pytest.mark.function("average_precision")
@pytest.mark.points(2)
def test_average_precision_edge_cases(student, reference, device):
    for interpolation in ("voc", "coco"):
        none = student.average_precision(torch.zeros(0, device=device), torch.zeros(0, dtype=torch.bool, device=device),
                                         5, interpolation)
        expect(none == 0.0, f"no detections for 5 ground truths: the {interpolation} AP is 0.0, not {none}")
        undefined = student.average_precision(torch.tensor([0.3], device=device),
                                              torch.tensor([False], device=device), 0, interpolation)
        expect(isinstance(undefined, float) and math.isnan(undefined),
               f"without ground truths the AP is undefined: return float('nan'), not {undefined}")
    # recall reaching exactly 0.5 and 1.0 (on COCO's levels) with G = 2 and G = 4
    for truths, flags in ((2, [True, False, True]), (4, [True, True, False, True, True, False])):
        scores = torch.linspace(1, 0.1, len(flags), dtype=torch.float64, device=device)
        hits = torch.tensor(flags, device=device)
        got, want = student.average_precision(scores, hits, truths, "coco"), reference.average_precision(
            scores, hits, truths, "coco")
        expect(isinstance(got, float) and abs(got - want) <= 1e-12,
               f"a curve whose recall lands exactly on COCO's levels (G = {truths}): the COCO AP is off; a level r "
               "takes the best precision at a recall >= r (r itself included), over the levels of "
               "COCO_RECALL_LEVELS")
    try:
        student.average_precision(torch.ones(2, device=device), torch.ones(2, dtype=torch.bool, device=device), 2,
                                  "11-point")
        raised = False
    except AssertionError as failure:
        raised = "ValueError" in str(failure)
    expect(raised, "an unknown interpolation ('11-point') must raise a ValueError")


# mean_average_precision -----------------------------------------------------------------------

def expect_same_map(got, want, what: str, hint: str = MAP_HINT) -> None:
    expect(isinstance(got, dict), f"mean_average_precision must return a dict, not {type(got).__name__}")
    for key in ("map", "map_50", "map_75"):
        expect(key in got, f"the result has no {key!r}")
        expect(isinstance(got[key], float), f"result[{key!r}] must be a Python float, not {type(got[key]).__name__}")
        expect(abs(got[key] - want[key]) <= 1e-9, f"{key} of {what} is {got[key]:.4f} where {want[key]:.4f} was "
                                                  f"expected; {hint}")


@pytest.mark.function("mean_average_precision")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 12), st.integers(1, 4), st.booleans())
def test_mean_average_precision_of_random_data_sets(student, reference, device, seed, images, classes, quantised):
    predictions, targets = data_set(seed, images, classes, quantised, device=device)
    got = student.call("mean_average_precision", predictions, targets,
                       failure=f"mean_average_precision failed on {images} images ({{error}}): {MAP_HINT}")
    expect_same_map(got, reference.mean_average_precision(predictions, targets),
                    f"{images} images of {classes} classes" + (" (boxes on a grid, tied scores)" if quantised else ""))


@pytest.mark.function("mean_average_precision")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 12), st.integers(1, 3))
def test_mean_average_precision_ignores_boxes_outside_the_area_range(student, reference, device, seed, images,
                                                                     classes):
    predictions, targets = data_set(seed, images, classes, False, device=device, degenerate=True)
    got = student.call("mean_average_precision", predictions, targets,
                       failure=f"mean_average_precision failed on {images} images with inverted and zero-area boxes "
                               f"({{error}}): {MAP_HINT}")
    expect_same_map(got, reference.mean_average_precision(predictions, targets),
                    f"{images} images with inverted and zero-area boxes",
                    "boxes outside COCO's area range 'all' (0 <= (x2 - x1)(y2 - y1) <= 1e10: inverted boxes have a "
                    "negative area) are ignored: such a ground truth does not count in G, such a detection left "
                    "unmatched is not a false positive; zero-area boxes are inside the range and overlap nothing")


@pytest.mark.function("mean_average_precision")
@pytest.mark.points(2)
def test_mean_average_precision_keeps_100_per_class_and_image(student, reference, device):
    predictions, targets = data_set(5, 3, 2, False, device=device)
    g = generator(6)
    # image 0: 100 confident false boxes of class 1, then 20 weaker exact copies of its objects
    # (true positives only if they are kept) and 30 boxes of class 2
    truths = torch.tensor([[10.0, 10.0, 40.0, 40.0], [50.0, 50.0, 90.0, 80.0]])
    targets[0] = {"boxes": truths.to(device), "labels": torch.tensor([1, 1]).to(device)}
    far = 200 + torch.rand(130, 2, generator=g) * 80
    boxes = torch.cat([torch.cat([far, far + 15], 1)[:100], truths.repeat(10, 1), torch.cat([far, far + 15], 1)[100:]])
    scores = torch.cat([0.5 + 0.5 * torch.rand(100, generator=g), 0.4 * torch.rand(20, generator=g),
                        torch.rand(30, generator=g)])
    predictions[0] = {"boxes": boxes.to(device), "scores": scores.to(device),
                      "labels": torch.cat([torch.ones(120, dtype=torch.int64), torch.full((30,), 2)]).to(device)}
    expect_same_map(student.mean_average_precision(predictions, targets),
                    reference.mean_average_precision(predictions, targets),
                    "an image with 120 detections of class 1 and 30 of class 2",
                    "only the 100 best-scored detections of each class in each image count (COCO's maxDets); the "
                    "30 of class 2 all count")
    expect_unchanged(student, "mean_average_precision")


@pytest.mark.function("mean_average_precision")
@pytest.mark.points(1)
def test_mean_average_precision_classes_thresholds_and_empty_sets(student, reference, device):
    predictions, targets = data_set(7, 6, 3, False, device=device)
    predictions[0]["labels"][:2] = 9  # a class nobody annotated: left out
    targets[1]["labels"][:1] = 8  # a class nobody detected: AP 0
    expect_same_map(student.mean_average_precision(predictions, targets),
                    reference.mean_average_precision(predictions, targets),
                    "a set with a class only detected and a class only annotated",
                    "classes without ground truths are left out; a class with ground truths and no detections has "
                    "AP 0")
    for thresholds in ([0.5], [0.3, 0.6, 0.9]):
        expect_same_map(student.mean_average_precision(predictions, targets, thresholds),
                        reference.mean_average_precision(predictions, targets, thresholds),
                        f"the set with iou_thresholds {thresholds}",
                        "'map' averages over the given thresholds; 'map_50' and 'map_75' are always at 0.5 and 0.75")
    empty = [{"boxes": torch.zeros(0, 4, device=device), "scores": torch.zeros(0, device=device),
              "labels": torch.zeros(0, dtype=torch.int64, device=device)}]
    nothing = [{"boxes": torch.zeros(0, 4, device=device), "labels": torch.zeros(0, dtype=torch.int64, device=device)}]
    expect_same_map(student.mean_average_precision(empty, nothing), reference.mean_average_precision(empty, nothing),
                    "a set with no ground truth at all", "every value is -1.0 then, as in COCOeval")


@pytest.mark.function("mean_average_precision")
@pytest.mark.points(1)
def test_mean_average_precision_refuses_bad_input(student, device):
    predictions, targets = data_set(8, 2, 2, False, device=device)
    for what, args in (("predictions and targets of different lengths", (predictions, targets[:1])),
                       ("a prediction without 'scores'", ([{"boxes": predictions[0]["boxes"],
                                                            "labels": predictions[0]["labels"]}, predictions[1]],
                                                          targets))):
        try:
            student.mean_average_precision(*args)
            raised = False
        except AssertionError as failure:
            if "not implemented yet" in str(failure):
                raise
            raised = "ValueError" in str(failure)
        expect(raised, f"{what} must raise a ValueError that says what is wrong")


@pytest.mark.function("mean_average_precision")
@pytest.mark.points(1)
def test_mean_average_precision_speed(student, reference):
    # The reference takes about 0.2 s here; a right answer that loops over each image's detections
    # and over the recall levels (the proofs' different-but-right one) about 29 times that: 60 leaves
    # it room and still stops an answer that redoes the whole set's work per detection.
    expect_fast(student, reference, "mean_average_precision",
                lambda g: data_set(int(torch.randint(0, 2**31 - 1, (1,), generator=g)), 300, 3, False,
                                   max_detections=40), factor=60, floor=0.2, seed=9,
                hint="compute each image's IoUs as one matrix and match each detection with tensor operations over "
                     "the ground truths (and the thresholds), not in Python loops over pairs of boxes")
