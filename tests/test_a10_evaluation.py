"""Proofs for a10-evaluation: the reference agrees with pycocotools' COCOeval, fed the data as it is
(its matches, ties included, its COCO-interpolated precision per class and its mAP, map_50 and
map_75, on random and quantised data sets, with and without inverted and zero-area boxes), VOC's
all-points AP equals the VOC devkit's formulation, the visible check's worked
examples are COCOeval's numbers; plausible wrong answers lose points on the test that names the
mistake; right answers written differently (loops over detections and recall levels, a call of
match_detections per threshold, class and image) earn full marks."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.suites.detections import data_set, scene
from coursetools.coco import coco_evaluation, coco_map
from coursetools.reference import load_reference
from odcourse.checks import evaluation as visible
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together

ASSIGNMENT = "a10-evaluation"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=60, deadline=None, database=None)
TOLERANCE = 1e-9  # the contract asks for 1e-3; the reference computes what COCOeval computes


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 25), st.integers(1, 4), st.booleans(), st.booleans())
def test_mean_average_precision_equals_cocoeval(seed, images, classes, quantised, degenerate):
    predictions, targets = data_set(seed, images, classes, quantised, degenerate=degenerate)
    got, want = REF.mean_average_precision(predictions, targets), coco_map(predictions, targets)
    assert all(abs(got[k] - want[k]) <= TOLERANCE for k in want), (got, want)


def test_mean_average_precision_equals_cocoeval_with_100_detections_and_odd_thresholds():
    predictions, targets = data_set(1, 4, 2, False, max_detections=260)
    assert max(len(p["boxes"]) for p in predictions) > 100
    for thresholds in (None, [0.3, 0.5, 0.75], [0.62]):
        got, want = REF.mean_average_precision(predictions, targets, thresholds), coco_map(predictions, targets, thresholds)
        assert all(abs(got[k] - want[k]) <= TOLERANCE for k in want), (thresholds, got, want)


def test_nothing_to_measure_is_minus_one_as_in_cocoeval():
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}]
    nothing = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    assert REF.mean_average_precision(empty, nothing) == {"map": -1.0, "map_50": -1.0, "map_75": -1.0}
    assert coco_map(empty, nothing)["map"] == -1.0


def test_inverted_and_zero_area_boxes_as_cocoeval_treats_them():
    """COCOeval ignores what has a negative area (an unmatched inverted detection, an inverted
    ground truth), not what has zero area; the reference follows it on data that has both."""
    predictions, targets = data_set(11, 8, 3, False, degenerate=True)
    areas = torch.cat([(d["boxes"][:, 2] - d["boxes"][:, 0]) * (d["boxes"][:, 3] - d["boxes"][:, 1])
                       for d in predictions + targets])
    assert (areas < 0).sum() >= 3 and (areas == 0).sum() >= 3
    got, want = REF.mean_average_precision(predictions, targets), coco_map(predictions, targets)
    assert all(abs(got[k] - want[k]) <= TOLERANCE for k in want), (got, want)
    # one image: an inverted detection scored first, an exact one, a zero-area one; a ground truth
    # and an inverted one: COCOeval's AP is 1 (the visible check's example)
    prediction = {"boxes": torch.tensor([[60.0, 60.0, 50.0, 70.0], [0.0, 0.0, 10.0, 10.0], [80.0, 80.0, 80.0, 90.0]]),
                  "scores": torch.tensor([0.95, 0.9, 0.7]), "labels": torch.tensor([1, 1, 1])}
    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [30.0, 0.0, 20.0, 10.0]]), "labels": torch.tensor([1, 1])}
    for result in (coco_map([prediction], [target]), REF.mean_average_precision([prediction], [target])):
        assert all(abs(result[k] - 1.0) <= TOLERANCE for k in ("map", "map_50", "map_75")), result


def test_equal_ious_go_to_the_later_ground_truth_as_in_cocoeval():
    gt = torch.tensor([[0.0, 0.0, 20.0, 10.0], [10.0, 0.0, 30.0, 10.0], [0.0, 0.0, 20.0, 10.0]])
    boxes, scores = torch.tensor([[5.0, 0.0, 25.0, 10.0], [0.0, 0.0, 20.0, 10.0]]), torch.tensor([0.9, 0.8])
    record = coco_evaluation([{"boxes": boxes, "scores": scores, "labels": torch.ones(2, dtype=torch.int64)}],
                             [{"boxes": gt, "labels": torch.ones(3, dtype=torch.int64)}], [0.3])
    matched = [e for e in record.evalImgs if e is not None and e["aRng"] == [0, 1e10]][0]["dtMatches"][0]
    # detection 0 overlaps the three ground truths equally (IoU 0.6): it takes the last, 2;
    # detection 1 is equal to ground truths 0 and 2: it takes 0, the one left
    assert [int(m) - 1 for m in matched] == [2, 0]
    assert REF.match_detections(boxes, scores, gt, 0.3).tolist() == [2, 0]


@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 10), st.integers(0, 30), st.booleans(), st.booleans())
def test_match_detections_equals_cocoevals_matches(seed, truths, count, quantised, degenerate):
    boxes, scores, gt = scene(torch.Generator().manual_seed(seed), truths, count, quantised, degenerate=degenerate)
    prediction = {"boxes": boxes, "scores": scores, "labels": torch.ones(count, dtype=torch.int64)}
    target = {"boxes": gt, "labels": torch.ones(truths, dtype=torch.int64)}
    evaluation = coco_evaluation([prediction], [target], [0.3, 0.5, 0.75])
    record = [e for e in evaluation.evalImgs if e is not None and e["aRng"] == [0, 1e10]]
    for t, threshold in enumerate([0.3, 0.5, 0.75]):
        got = REF.match_detections(boxes, scores, gt, threshold)
        want = torch.full((count,), -1, dtype=torch.int64)
        if record:
            order = torch.sort(scores, descending=True, stable=True).indices[:100]
            # COCOeval's annotation ids are 1, 2, ... in the order of the image's ground truths
            want[order] = torch.tensor([int(m) - 1 if m > 0 else -1 for m in record[0]["dtMatches"][t]],
                                       dtype=torch.int64)
        assert torch.equal(got, want), (threshold, got, want)


def devkit_voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """PASCAL VOC devkit's all-points AP (VOC2010 onwards), as in its voc_ap()."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 60), st.integers(1, 30), st.booleans())
def test_voc_average_precision_equals_the_devkit(seed, count, truths, tied):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(count, generator=g, dtype=torch.float64)
    if tied:
        scores = (scores * 3).round()
    hits = torch.rand(count, generator=g) < 0.5
    hits[hits.cumsum(0) > truths] = False
    order = torch.sort(scores, descending=True, stable=True).indices
    found = hits[order].double().cumsum(0).numpy()
    want = devkit_voc_ap(found / truths, found / np.arange(1, count + 1))
    assert abs(REF.average_precision(scores, hits, truths, "voc") - want) <= TOLERANCE


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 8), st.integers(1, 20))
def test_coco_average_precision_equals_cocoevals_precision(seed, images, classes):
    predictions, targets = data_set(seed, images, classes, False)
    evaluation = coco_evaluation(predictions, targets, [0.5])
    precision = evaluation.eval["precision"][0, :, :, 0, -1]  # [R, K]
    for k, label in enumerate(evaluation.params.catIds):
        scores, hits, truths = [], [], 0
        for prediction, target in zip(predictions, targets):
            mine, theirs = prediction["labels"] == label, target["labels"] == label
            truths += int(theirs.sum())
            order = torch.sort(prediction["scores"][mine], descending=True, stable=True).indices[:100]
            matched = REF.match_detections(prediction["boxes"][mine][order], prediction["scores"][mine][order],
                                           target["boxes"][theirs], 0.5)
            scores.append(prediction["scores"][mine][order])
            hits.append(matched >= 0)
        got = REF.average_precision(torch.cat(scores), torch.cat(hits), truths, "coco")
        want = precision[:, k].mean() if truths else float("nan")
        assert (np.isnan(got) and np.isnan(want)) or abs(got - want) <= TOLERANCE, (label, got, want)


def test_visible_checks_worked_examples_are_cocoevals_numbers():
    predictions = [{"boxes": torch.cat([visible.DETECTIONS, torch.tensor([[0.0, 0.0, 10.0, 10.0]])]),
                    "scores": torch.cat([visible.SCORES, torch.tensor([0.7])]), "labels": torch.tensor([1, 1, 1, 1, 1, 2])},
                   {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}]
    targets = [{"boxes": visible.GT, "labels": torch.tensor([1, 1, 1])},
               {"boxes": torch.tensor([[5.0, 5.0, 25.0, 25.0]]), "labels": torch.tensor([2])}]
    coco = coco_map(predictions, targets)
    assert abs(coco["map_50"] - 47.2 / 202) < 1e-12 and abs(coco["map_75"] - 26.8 / 202) < 1e-12
    assert abs(coco_map(predictions, targets, [0.5, 0.75])["map"] - (47.2 + 26.8) / 404) < 1e-12
    # the AP example: TP, FP, TP, TP, FP for 4 ground truths
    scores, hits = torch.tensor([0.2, 0.9, 0.7, 0.5, 0.4]), torch.tensor([False, True, False, True, True])
    order = torch.sort(scores, descending=True).indices
    found = hits[order].double().cumsum(0).numpy()
    assert devkit_voc_ap(found / 4, found / np.arange(1, 6)) == 0.625
    for check in (visible.match_detections, visible.average_precision, visible.mean_average_precision):
        check(getattr(REF, check.__name__))


# Wrong answers lose points where their mistake is named -----------------------------------------

MATCH = '''
def match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold=0.5):
    n, g = len(pred_boxes), len(gt_boxes)
    result = torch.full((n,), -1, dtype=torch.int64, device=pred_boxes.device)
    if n == 0 or g == 0:
        return result
    a, b = pred_boxes.double(), gt_boxes.double()
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    taken = torch.zeros(g, dtype=torch.bool, device=pred_boxes.device)
    for d in {order}:
        {choose}
    return result
'''
MATCH_PARTS = dict(order="torch.sort(pred_scores, descending=True, stable=True).indices.tolist()",
                   choose="""candidates = (iou[d] >= iou_threshold) & ~taken
        if candidates.any():
            best = g - 1 - int(torch.where(candidates, iou[d], -1.0).flip(0).argmax())
            result[d] = best
            taken[best] = True""")


def match(**changes):
    return MATCH.format(**{**MATCH_PARTS, **changes})


AP = '''
def average_precision(scores, true_positives, num_ground_truths, interpolation="coco"):
    if interpolation not in ("voc", "coco"):
        raise ValueError(f"unknown interpolation {{interpolation!r}}")
    if num_ground_truths == 0:
        return float("nan")
    order = {order}
    hits = true_positives[order].tolist()
    precisions, recalls, found = [], [], 0
    for k, hit in enumerate(hits):
        found += int(hit)
        precisions.append(found / (k + 1))
        recalls.append({recall})
    {envelope}
    if interpolation == "voc":
        total, previous = 0.0, 0.0
        for r, p in zip(recalls, precisions):
            total += (r - previous) * p
            previous = r
        return total
    total = 0.0
    for level in {levels}:
        {level}
    return total / {count}
'''
AP_PARTS = dict(order="torch.sort(scores, descending=True, stable=True).indices", recall="found / num_ground_truths",
                envelope="for k in range(len(precisions) - 2, -1, -1):\n"
                         "        precisions[k] = max(precisions[k], precisions[k + 1])",
                levels="COCO_RECALL_LEVELS", count="101",
                level="best = [p for r, p in zip(recalls, precisions) if r >= level]\n"
                      "        total += max(best) if best else 0.0")


def ap(**changes):
    return AP.format(**{**AP_PARTS, **changes})


MAP = '''
def mean_average_precision(predictions, targets, iou_thresholds=None):
    if len(predictions) != len(targets):
        raise ValueError(f"{{len(predictions)}} predictions for {{len(targets)}} targets")
    for entry, keys in [(p, ("boxes", "scores", "labels")) for p in predictions] + [(t, ("boxes", "labels")) for t in targets]:
        for key in keys:
            if key not in entry:
                raise ValueError(f"an entry has no {{key!r}}")
    thresholds = {thresholds}
    classes = sorted({classes})

    def area(boxes):
        boxes = boxes.double()
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def ap_at(threshold, label):
        scores, hits, truths = [], [], 0
        for prediction, target in zip(predictions, targets):
            mine, theirs = prediction["labels"] == label, target["labels"] == label
            gt = target["boxes"][theirs]
            inside = {inside}
            truths += int(inside.sum())
            s = prediction["scores"][mine]
            keep = torch.sort(s, descending=True, stable=True).indices[:{top}]
            boxes, s = prediction["boxes"][mine][keep], s[keep]
            matched = match_detections(boxes, s, gt[inside], threshold)
            ignored = (matched < 0) & {outside}
            left = (matched < 0).nonzero().squeeze(1)
            ignored[left[match_detections(boxes[left], s[left], gt[~inside], threshold) >= 0]] = True
            scores.append(s[~ignored].cpu())
            hits.append(matched[~ignored].cpu() >= 0)
        return average_precision(torch.cat(scores), torch.cat(hits), truths, {interpolation})

    if not classes:
        return {{"map": -1.0, "map_50": -1.0, "map_75": -1.0}}
    table = {{t: sum(ap_at(t, c) for c in classes) / len(classes) for t in set(thresholds) | {{0.5, 0.75}}}}
    return {{"map": sum(table[t] for t in thresholds) / len(thresholds), "map_50": table[0.5], "map_75": table[0.75]}}
'''
MAP_PARTS = dict(thresholds="COCO_IOU_THRESHOLDS if iou_thresholds is None else list(iou_thresholds)",
                 classes="{int(l) for t in targets for l in t['labels']}", top="100", interpolation='"coco"',
                 inside="(area(gt) >= 0) & (area(gt) <= 1e10)", outside="((area(boxes) < 0) | (area(boxes) > 1e10))")


def mean_ap(**changes):
    return MAP.format(**{**MAP_PARTS, **changes})


WRONG = {
    # match_detections
    "detections in input order": ("match-detections", match(order="range(n)"), "by decreasing score", ()),
    "IoU above the threshold, not at it": ("match-detections", match(
        choose=MATCH_PARTS["choose"].replace(">= iou_threshold", "> iou_threshold")), "IoU >= the threshold", ()),
    "a ground truth matched twice": ("match-detections", match(choose=MATCH_PARTS["choose"].replace(" & ~taken", "")),
                                     "not matched yet", ()),
    "the best ground truth even if taken": ("match-detections", match(choose="""best = int(iou[d].argmax())
        if iou[d, best] >= iou_threshold and not taken[best]:
            result[d] = best
            taken[best] = True"""), "not matched yet", ()),
    "equal IoUs to the lower index": ("match-detections", match(
        choose=MATCH_PARTS["choose"].replace("g - 1 - int(torch.where(candidates, iou[d], -1.0).flip(0).argmax())",
                                             "int(torch.where(candidates, iou[d], -1.0).argmax())")),
        "equal IoUs", ()),
    "IoU without clamping the overlap": ("match-detections", match().replace("(rb - lt).clamp(min=0).prod(2)",
                                                                            "(rb - lt).prod(2)"),
                                         "overlaps nothing", ()),
    # average_precision
    "raw precision, not interpolated": ("average-precision", ap(
        envelope="pass", level="total += next((p for r, p in zip(recalls, precisions) if r >= level), 0.0)"),
        "the best precision at any recall >= r", ()),
    "recall over the detections": ("average-precision", ap(recall="found / len(hits)"), "recall TP/G", ()),
    "precision in input order": ("average-precision", ap(order="torch.arange(len(scores))"),
                                  "sort by decreasing score", ()),
    "100 levels without 0": ("average-precision", ap(levels="COCO_RECALL_LEVELS[1:]", count="100"),
                             "COCO_RECALL_LEVELS", ()),
    # mean_average_precision
    "every detection kept": ("mean-average-precision", mean_ap(top="None"), "100 best-scored", ()),
    "classes without ground truths averaged in": ("mean-average-precision", mean_ap(
        classes="{int(l) for d in predictions + targets for l in d['labels']}"), "classes without ground truths", ()),
    "VOC's interpolation": ("mean-average-precision", mean_ap(interpolation='"voc"'), "COCO-interpolated AP", ()),
    "the given thresholds ignored": ("mean-average-precision", mean_ap(thresholds="COCO_IOU_THRESHOLDS"),
                                     "'map' averages over the given thresholds", ()),
    "inverted ground truths counted": ("mean-average-precision", mean_ap(inside="torch.ones(len(gt), dtype=torch.bool)"),
                                       "does not count in G", ()),
    "unmatched inverted detections as false positives": ("mean-average-precision", mean_ap(
        outside="torch.zeros(len(boxes), dtype=torch.bool)"), "not a false positive", ()),
}

MISTAKES = WRONG
SLOW = []

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW)


DIFFERENT_BUT_RIGHT = {"match-detections": match(), "average-precision": ap(), "mean-average-precision": mean_ap()}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
