"""Proofs for a09-ssd: the reference equals torchvision's SSD pieces (DefaultBoxGenerator for SSD300
and random layouts, SSDMatcher, BoxCoder with weights (10, 10, 5, 5), smooth_l1_loss and the whole
SSD.compute_loss on matched batches); plausible wrong answers lose points on the test that names
the mistake; right answers written differently (default boxes cell by cell, matching by loops over
ground truths, mining by top-k ranks) earn full marks."""
import types

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD

from coursetools.reference import load_reference
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together

ASSIGNMENT = "a09-ssd"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=80, deadline=None, database=None)
SSD300 = dict(scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
              steps=[8, 16, 32, 64, 100, 300])


def torchvision_boxes(sizes, scales, aspect_ratios, steps=None, image=(300, 300), clip=True):
    generator = DefaultBoxGenerator(aspect_ratios, scales=scales, steps=steps, clip=clip)
    maps = [torch.zeros(1, 1, *((s, s) if isinstance(s, int) else s)) for s in sizes]
    boxes = generator(ImageList(torch.zeros(1, 3, *image), [image]), maps)[0]
    return boxes / torch.tensor([image[1], image[0], image[1], image[0]])


def test_ssd300_default_boxes_equal_torchvision():
    sizes = [38, 19, 10, 5, 3, 1]
    got = REF.default_boxes(sizes, SSD300["scales"], SSD300["aspect_ratios"], steps=SSD300["steps"], image_size=300)
    assert got.shape == (8732, 4) and got.dtype == torch.float32
    assert torch.allclose(got, torchvision_boxes(sizes, **SSD300), atol=1e-7)
    # the SSD300 model's own generator holds the same configuration
    with torch.device("meta"):
        model = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)
    assert model.anchor_generator.scales == SSD300["scales"] and model.anchor_generator.steps == SSD300["steps"]


@PROPERTY
@given(st.lists(st.one_of(st.integers(1, 8), st.tuples(st.integers(1, 6), st.integers(1, 6))), min_size=1, max_size=4),
       st.data(), st.booleans(), st.booleans())
def test_default_boxes_equal_torchvision_on_random_layouts(sizes, data, clip, with_steps):
    scales = sorted(data.draw(st.lists(st.floats(0.05, 1.3), min_size=len(sizes) + 1, max_size=len(sizes) + 1)))
    ratios = [data.draw(st.lists(st.sampled_from([2, 3, 0.5]), max_size=2)) for _ in sizes]
    steps = [data.draw(st.sampled_from([8, 16, 32])) for _ in sizes] if with_steps else None
    image = (96, 128)
    got = REF.default_boxes(sizes, scales, ratios, steps=steps, image_size=image, clip=clip)
    assert torch.allclose(got, torchvision_boxes(sizes, scales, ratios, steps, image, clip), atol=1e-6)


@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 8), st.sampled_from([0.3, 0.5, 0.7]), st.booleans())
def test_matching_equals_ssdmatcher_and_encoding_equals_boxcoder(seed, objects, threshold, quantised):
    g = torch.Generator().manual_seed(seed)
    if quantised:  # coarse boxes: IoUs exactly at the threshold and ties between default boxes
        defaults = torch.randint(0, 8, (60, 2), generator=g).double()
        defaults = torch.cat([defaults, defaults + torch.randint(1, 4, (60, 2), generator=g)], 1)
        gt = torch.randint(0, 8, (objects, 2), generator=g).double()
        gt = torch.cat([gt, gt + torch.randint(1, 4, (objects, 2), generator=g)], 1)
    else:
        centre = torch.rand(300, 2, generator=g, dtype=torch.float64)
        defaults = torch.cat([centre - 0.1, centre + 0.1 + torch.rand(300, 2, generator=g, dtype=torch.float64) * 0.2], 1)
        corner = torch.rand(objects, 2, generator=g, dtype=torch.float64) * 0.8
        gt = torch.cat([corner, corner + 0.05 + torch.rand(objects, 2, generator=g, dtype=torch.float64) * 0.3], 1)
    got = REF.match_default_boxes(gt, defaults, threshold)
    if objects:
        iou = torchvision.ops.box_iou(gt, defaults)
        if len(set(iou.argmax(1).tolist())) == objects:  # shared best boxes: torchvision's winner is unspecified
            assert torch.equal(got, SSDMatcher(threshold)(iou))
    else:
        assert bool((got == -1).all())
    positive = got >= 0
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    assert torch.allclose(REF.encode_ssd(gt[got[positive]], defaults[positive]),
                          coder.encode_single(gt[got[positive]], defaults[positive]), atol=1e-10)


def test_a_shared_best_box_goes_to_the_later_ground_truth():
    defaults = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    gt = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.1, 0.1, 0.5, 0.5]])
    assert REF.match_default_boxes(gt, defaults, 0.9).tolist() == [1, -1]


@PROPERTY
@given(st.integers(0, 10**6), st.sampled_from([1.0, 0.5, 1 / 9, 0.0]))
def test_smooth_l1_equals_pytorch(seed, beta):
    x = torch.randn(200, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    x[:2] = torch.tensor([beta, -beta])
    assert torch.equal(REF.smooth_l1(x, beta), F.smooth_l1_loss(x, torch.zeros_like(x), reduction="none", beta=beta))


def mining_by_loops(loss, labels, ratio):
    """Hard negatives image by image in Python: background boxes by decreasing loss, then index."""
    chosen = torch.zeros_like(labels, dtype=torch.bool)
    for i in range(labels.shape[0]):
        wanted = ratio * int((labels[i] > 0).sum())
        background = [d for d in range(labels.shape[1]) if labels[i, d] == 0]
        background.sort(key=lambda d: (-float(loss[i, d]), d))
        chosen[i, background[:wanted]] = True
    return chosen


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 4), st.integers(0, 50), st.sampled_from([1, 3]), st.booleans())
def test_hard_negative_mining_equals_loops(seed, n, count, ratio, ties):
    g = torch.Generator().manual_seed(seed)
    loss = torch.rand(n, count, generator=g, dtype=torch.float64)
    loss = (loss * 3).floor() if ties else loss
    labels = torch.where(torch.rand(n, count, generator=g) < 0.2, 1, 0)
    assert torch.equal(REF.hard_negative_mining(loss, labels, ratio), mining_by_loops(loss, labels, ratio))


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 3), st.integers(4, 10))
def test_ssd_loss_equals_torchvisions_compute_loss(seed, n, classes):
    g = torch.Generator().manual_seed(seed)
    defaults = REF.default_boxes([6, 3], [0.2, 0.45, 0.8], [[2], [2, 3]]) * 96
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    targets, matched, labels, offsets = [], [], [], []
    for _ in range(n):
        objects = int(torch.randint(0, 4, (1,), generator=g))
        corner = torch.rand(objects, 2, generator=g) * 60
        boxes = torch.cat([corner, corner + 8 + torch.rand(objects, 2, generator=g) * 30], 1)
        classes_of = torch.randint(1, classes, (objects,), generator=g)
        matches = REF.match_default_boxes(boxes, defaults, 0.5)
        targets.append({"boxes": boxes, "labels": classes_of})
        matched.append(matches)
        safe = matches.clamp(min=0)
        labels.append(torch.where(matches >= 0, classes_of[safe] if objects else 0, 0))
        offsets.append(REF.encode_ssd(boxes[safe], defaults) if objects else torch.zeros(len(defaults), 4))
    cls_logits = torch.randn(n, len(defaults), classes, generator=g)
    loc_pred = torch.randn(n, len(defaults), 4, generator=g)
    state = types.SimpleNamespace(box_coder=coder, neg_to_pos_ratio=3)
    want = SSD.compute_loss(state, targets, {"cls_logits": cls_logits, "bbox_regression": loc_pred},
                            [defaults] * n, matched)
    got = REF.ssd_loss(cls_logits, loc_pred, torch.stack(labels), torch.stack(offsets), 3, 1.0)
    assert torch.allclose(got, want["bbox_regression"] + want["classification"], atol=1e-5)


# Wrong answers lose points where their mistake is named -----------------------------------------

DEFAULTS = '''
def default_boxes(feature_map_sizes, scales, aspect_ratios, steps=None, image_size=None, clip=True):
    boxes = []
    for k, size in enumerate(feature_map_sizes):
        rows, cols = (size, size) if isinstance(size, int) else size
        s = scales[k]
        shapes = [(s, s), ({second}, {second})]
        for r in aspect_ratios[k]:
            shapes += {ratio_shapes}
        if steps is not None:
            H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
            step_x, step_y = steps[k] / W, steps[k] / H
        else:
            step_x, step_y = 1 / cols, 1 / rows
        for {outer} in range({outer_count}):
            for {inner} in range({inner_count}):
                cx, cy = (j + 0.5) * step_x, (i + 0.5) * step_y
                for w, h in shapes:
                    if clip:
                        w, h = {clip_w}, min(max(h, 0.0), 1.0)
                    boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
'''
DEFAULTS_PARTS = dict(second="math.sqrt(s * scales[k + 1])",
                      ratio_shapes="[(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]",
                      outer="i", outer_count="rows", inner="j", inner_count="cols", clip_w="min(max(w, 0.0), 1.0)")


def defaults(**changes):
    return "import math\n" + DEFAULTS.format(**{**DEFAULTS_PARTS, **changes})


MATCH = '''
def match_default_boxes(gt_boxes, default_boxes, iou_threshold=0.5):
    D = len(default_boxes)
    matches = torch.full((D,), -1, dtype=torch.long, device=default_boxes.device)
    best = torch.full((D,), {start}, dtype=default_boxes.dtype, device=default_boxes.device)
    ious = []
    for g in range(len(gt_boxes)):
        box = gt_boxes[g]
        w = (torch.minimum(box[2], default_boxes[:, 2]) - torch.maximum(box[0], default_boxes[:, 0])).clamp(min=0)
        h = (torch.minimum(box[3], default_boxes[:, 3]) - torch.maximum(box[1], default_boxes[:, 1])).clamp(min=0)
        inter = w * h
        union = (box[2] - box[0]) * (box[3] - box[1]) + (default_boxes[:, 2] - default_boxes[:, 0]) * (
            default_boxes[:, 3] - default_boxes[:, 1]) - inter
        iou = inter / union
        ious.append(iou)
        better = ({compare}) & (iou > best)
        matches = torch.where(better, g, matches)
        best = torch.where(better, iou, best)
    {force}
    return matches
'''
MATCH_PARTS = dict(start="-1.0", compare="iou >= iou_threshold",
                   force="for g, iou in enumerate(ious):\n        matches[int(iou.argmax())] = g")


def match(**changes):
    return MATCH.format(**{**MATCH_PARTS, **changes})


ENCODE = '''
def encode_ssd(matched_boxes, default_boxes, variances=(0.1, 0.2)):
    gw, gh = matched_boxes[:, 2] - matched_boxes[:, 0], matched_boxes[:, 3] - matched_boxes[:, 1]
    dw, dh = default_boxes[:, 2] - default_boxes[:, 0], default_boxes[:, 3] - default_boxes[:, 1]
    gx, gy = {g_centre}
    dx, dy = default_boxes[:, 0] + dw / 2, default_boxes[:, 1] + dh / 2
    return torch.stack([(gx - dx) / {x_scale} / variances[0], (gy - dy) / dh / variances[0],
                        {size_w}, torch.log(gh / dh) / variances[1]], dim=1)
'''
ENCODE_PARTS = dict(g_centre="matched_boxes[:, 0] + gw / 2, matched_boxes[:, 1] + gh / 2", x_scale="dw",
                    size_w="torch.log(gw / dw) / variances[1]")


def encode(**changes):
    return ENCODE.format(**{**ENCODE_PARTS, **changes})


SMOOTH = '''
def smooth_l1(x, beta=1.0):
    a = x.abs()
    if beta == 0:
        return {zero}
    small = a < beta
    return small * ({inside}) + ~small * ({outside})
'''
SMOOTH_PARTS = dict(zero="a", inside="0.5 * x ** 2 / beta", outside="a - 0.5 * beta")


def smooth(**changes):
    return SMOOTH.format(**{**SMOOTH_PARTS, **changes})


MINING = '''
def hard_negative_mining(conf_loss, labels, neg_pos_ratio=3):
    positive = labels > 0
    keep = torch.zeros_like(positive)
    for i in range(len(labels)):
        wanted = {wanted}
        loss = conf_loss[i].detach().clone()
        loss[{exclude}] = -float("inf")
        order = torch.sort(loss, descending=True, stable=True).indices
        picked = order[:min(wanted, int((~positive[i]).sum()))]
        keep[i, picked] = True
    return keep
'''
MINING_PARTS = dict(wanted="neg_pos_ratio * int(positive[i].sum())", exclude="positive[i]")


def mining(**changes):
    return MINING.format(**{**MINING_PARTS, **changes})


LOSS = '''
def ssd_loss(cls_logits, loc_pred, labels, loc_targets, neg_pos_ratio=3, alpha=1.0):
    ce = F.cross_entropy(cls_logits.transpose(1, 2), labels, reduction="none")  # N, D
    positive = labels > 0
    negative = hard_negative_mining({mining_loss}, labels, neg_pos_ratio)
    difference = {difference}
    loc = smooth_l1(difference).sum()
    conf = {conf}
    return (conf + alpha * loc) / {normaliser}
'''
LOSS_PARTS = dict(mining_loss="ce", difference="loc_pred[positive] - loc_targets[positive]",
                  conf="ce[positive].sum() + ce[negative].sum()", normaliser="max(1, int(positive.sum()))")


def loss(**changes):
    return LOSS.format(**{**LOSS_PARTS, **changes})


WRONG = {
    # default_boxes
    "cells column by column": ("default-boxes", defaults(outer="j", outer_count="cols", inner="i", inner_count="rows"),
                               "cell by cell row-major", ()),
    "s'_k from the next map's scale alone": ("default-boxes", defaults(second="scales[k + 1]"),
                                             "s'_k = sqrt(s_k s_(k+1))", ()),
    "one box per ratio": ("default-boxes", defaults(ratio_shapes="[(s * math.sqrt(r), s / math.sqrt(r))]"),
                          "its transpose for each ratio", ()),
    "widths never clipped": ("default-boxes", defaults(clip_w="w"), "clipped to [0, 1] when clip", ()),
    # match_default_boxes
    "no forced match for each ground truth": ("match-default-boxes", match(force="pass"),
                                              "every ground truth takes its own best default box", ("ssd_loss",)),
    "the threshold as a strict inequality": ("match-default-boxes", match(compare="iou > iou_threshold"),
                                             "an IoU equal to the threshold counts as a match", ()),
    "the earlier ground truth wins a shared best box": ("match-default-boxes", match(
        force="for g, iou in reversed(list(enumerate(ious))):\n        matches[int(iou.argmax())] = g"),
        "the later one gets it", ()),
    # encode_ssd
    "corners instead of centres": ("encode-ssd", encode(g_centre="matched_boxes[:, 0], matched_boxes[:, 1]"),
                                   "g_cx - d_cx", ()),
    "x offset divided by the height": ("encode-ssd", encode(x_scale="dh"), "dx = (g_cx - d_cx) / d_w", ()),
    "no logarithm for the width": ("encode-ssd", encode(size_w="(gw / dw - 1) / variances[1]"),
                                   "dw = log(g_w / d_w) / v1", ()),
    # smooth_l1
    "the quadratic part without beta": ("smooth-l1", smooth(inside="0.5 * x ** 2"), "0.5 x^2 / beta", ()),
    "the linear part without the offset": ("smooth-l1", smooth(outside="a"), "|x| - 0.5 beta", ()),
    "beta 0 divides by zero": ("smooth-l1", smooth(zero="0.5 * x ** 2 / beta"), "|x| when beta is 0", ()),
    # hard_negative_mining
    "the same number of negatives as positives": ("hard-negative-mining", mining(wanted="int(positive[i].sum())"),
                                                  "neg_pos_ratio x (its positives)", ("ssd_loss",)),
    "positives can be picked as negatives": ("hard-negative-mining", mining(exclude="torch.zeros_like(positive[i])"),
                                             "never a positive", ("ssd_loss",)),
    "the smallest losses picked": ("hard-negative-mining", mining().replace(
        "descending=True", "descending=False").replace('-float("inf")', 'float("inf")'),
        "background boxes with the largest loss", ("ssd_loss",)),
    # ssd_loss
    "every background box counted": ("ssd-loss", loss(conf="ce.sum()"), "hard negatives chosen from the cross-entropy",
                                     ()),
    "background offsets counted": ("ssd-loss", loss(difference="loc_pred - loc_targets"),
                                   "background offsets do not count", ()),
    "averaged over all boxes": ("ssd-loss", loss(normaliser="labels.numel()"), "the number of positives in the batch",
                                ()),
    "divided by zero without positives": ("ssd-loss", loss(normaliser="positive.sum()"),
                                          "divide by at least 1, never by 0", ()),
}

MISTAKES = WRONG
SLOW = []

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW)


DIFFERENT_BUT_RIGHT = {"default-boxes": defaults(), "match-default-boxes": match(), "encode-ssd": encode(),
                       "smooth-l1": smooth(), "hard-negative-mining": mining(), "ssd-loss": loss()}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
