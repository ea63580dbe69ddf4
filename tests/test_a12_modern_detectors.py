"""Proofs for a12-modern-detectors: the reference equals torchvision's sigmoid_focal_loss and
generalized_box_iou (values and gradients), the matching of torchvision's FCOS.compute_loss for one
image, the regression and centre-ness targets of its FCOSHead (and, put together, FCOS's three
losses), scipy's linear_sum_assignment (total costs, and the same pairs when the optimum is unique)
and DETR's set loss recomputed from torchvision's box operations and scipy; plausible wrong answers
lose points on the test that names the mistake; right answers written differently (log-sigmoid
focal loss, GIoU by coordinates, FCOS matching level by level, a Hungarian algorithm on Python
lists...) earn full marks."""
import math
import types

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from torchvision.models.detection._utils import BoxLinearCoder
from torchvision.models.detection.fcos import FCOS, FCOSHead

from coursetools.reference import load_reference
from odcourse.checks.modern import expected_detr_loss, fcos_points, torchvision_fcos_match
from autograder import assignment as assignments
from tests.proofs import assert_full_marks, assert_mistakes_are_named, grade, graded_together, scores

ASSIGNMENT = "a12-modern-detectors"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=60, deadline=None, database=None)


def boxes(g, n, scale=100.0, dtype=torch.float64):
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    return torch.cat([corner, corner + torch.rand(n, 2, generator=g, dtype=torch.float64) * scale / 2], 1).to(dtype)


# The oracles ------------------------------------------------------------------------------------

@PROPERTY
@given(st.integers(0, 10**6), st.sampled_from([0.25, 0.5, 1.0, -1.0]), st.sampled_from([0.0, 0.5, 2.0, 5.0]),
       st.sampled_from(["none", "mean", "sum"]), st.sampled_from([1.0, 10.0, 40.0]))
def test_focal_loss_and_its_gradient_equal_torchvisions(seed, alpha, gamma, reduction, scale):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(30, 5, generator=g, dtype=torch.float64) * scale).requires_grad_(True)
    targets = (torch.rand(30, 5, generator=g) < 0.3).double()
    ours = REF.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    theirs = torchvision.ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (mine,) = torch.autograd.grad(ours, logits, upstream)
    (peer,) = torch.autograd.grad(theirs, logits, upstream)
    assert torch.allclose(mine, peer, rtol=1e-10, atol=1e-12, equal_nan=True)  # gamma < 1 at p_t = 1: nan in both
    with pytest.raises(ValueError):
        REF.sigmoid_focal_loss(logits, targets, alpha, gamma, "average")


def test_focal_loss_is_finite_where_a_naive_log_is_not():
    logits, targets = torch.tensor([40.0, -40.0, 90.0]), torch.tensor([0.0, 1.0, 0.0])
    ours = REF.sigmoid_focal_loss(logits, targets)
    assert torch.isfinite(ours).all() and torch.allclose(ours, torchvision.ops.sigmoid_focal_loss(logits, targets))


@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 25), st.integers(0, 25), st.sampled_from([torch.float32, torch.float64]))
def test_generalized_box_iou_and_its_gradient_equal_torchvisions(seed, n, m, dtype):
    g = torch.Generator().manual_seed(seed)
    first, second = boxes(g, n, dtype=dtype).requires_grad_(True), boxes(g, m, dtype=dtype).requires_grad_(True)
    ours, theirs = REF.generalized_box_iou(first, second), torchvision.ops.generalized_box_iou(first, second)
    assert ours.dtype == dtype and ours.shape == (n, m)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-6
    assert torch.allclose(ours, theirs, atol=tolerance)
    if n and m and dtype == torch.float64:
        upstream = torch.randn(n, m, generator=g, dtype=torch.float64)
        mine = torch.autograd.grad(ours, [first, second], upstream)
        peer = torch.autograd.grad(theirs, [first, second], upstream)
        assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(mine, peer))


LAYOUTS = [((8, 16, 32), (8, 16, 32)), ((8, 16, 32), (4, 8, 16)), ((8, 16, 32, 64, 128), (8, 16, 32, 64, 128)),
           ((16,), (16,))]


@PROPERTY
@given(st.integers(0, 10**6), st.sampled_from(range(len(LAYOUTS))), st.sampled_from([64, 128, 320]),
       st.integers(0, 12), st.sampled_from([1.5, 1.0, 2.5]), st.booleans())
def test_fcos_match_is_torchvisions_fcos_matching(seed, layout, image_size, count, radius, whole):
    """FCOS.compute_loss ranks candidates by 1e8 - area in float32 unless the boxes are float64, so the
    comparison is in float64, and in float32 on whole-pixel boxes whose areas differ by more than 16."""
    g = torch.Generator().manual_seed(seed)
    strides, units = LAYOUTS[layout]
    dtype = torch.float32 if whole else torch.float64
    anchors, counts = fcos_points(image_size, strides, units, dtype)
    corner = torch.rand(count, 2, generator=g, dtype=torch.float64) * image_size * 0.9
    gt = torch.cat([corner, corner + 4 + torch.rand(count, 2, generator=g, dtype=torch.float64) * image_size * 0.8], 1)
    if whole:
        gt = gt.round().float()
        areas = sorted(((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])).tolist())
        if any(0 < b - a <= 16 for a, b in zip(areas, areas[1:])):
            return
    assert torch.equal(REF.fcos_match(anchors, gt, counts, radius), torchvision_fcos_match(anchors, gt, counts, radius))


def test_fcos_match_gives_equal_areas_to_the_lowest_index_as_torchvision_does():
    anchors, counts = fcos_points(64, (8, 16), (8, 16), torch.float64)
    gt = torch.tensor([[20.0, 20.0, 40.0, 44.0], [4.0, 4.0, 60.0, 60.0], [20.0, 20.0, 40.0, 44.0]], dtype=torch.float64)
    ours = REF.fcos_match(anchors, gt, counts)
    assert torch.equal(ours, torchvision_fcos_match(anchors, gt, counts)) and 0 in ours.tolist() and 2 not in ours.tolist()


@PROPERTY
@given(st.integers(0, 10**6), st.sampled_from(range(len(LAYOUTS))), st.integers(0, 6), st.integers(1, 3))
def test_fcos_targets_and_centerness_give_torchvisions_fcos_losses(seed, layout, count, images):
    """FCOSHead.compute_loss from torchvision on random head outputs equals the three losses built from
    the reference: focal loss of the classes, 1 - GIoU of the decoded boxes, and binary cross-entropy
    against the centre-ness of the reference's targets."""
    g = torch.Generator().manual_seed(seed)
    strides, units = LAYOUTS[layout]
    anchors, counts = fcos_points(128, strides, units, torch.float64)
    classes = 3
    targets, matched = [], []
    for _ in range(images):
        gt = boxes(g, count, 90.0)
        targets.append({"boxes": gt, "labels": torch.randint(0, classes, (count,), generator=g)})
        matched.append(REF.fcos_match(anchors, gt, counts))
    outputs = {"cls_logits": torch.randn(images, len(anchors), classes, generator=g, dtype=torch.float64),
               "bbox_regression": torch.rand(images, len(anchors), 4, generator=g, dtype=torch.float64) * 3,
               "bbox_ctrness": torch.randn(images, len(anchors), 1, generator=g, dtype=torch.float64)}
    head = types.SimpleNamespace(box_coder=BoxLinearCoder(normalize_by_size=True))
    want = FCOSHead.compute_loss(head, targets, outputs, [anchors] * images, matched)
    foreground = torch.stack(matched) >= 0
    positives = max(1, int(foreground.sum()))
    onehot = torch.zeros_like(outputs["cls_logits"])
    ltrb, truth = [], []
    for i, (target, match) in enumerate(zip(targets, matched)):
        rows = torch.nonzero(match >= 0).reshape(-1)
        onehot[i, rows, target["labels"][match[rows]]] = 1.0
        goal = REF.fcos_targets(anchors, target["boxes"], match)
        assert torch.allclose(goal[rows], BoxLinearCoder(True).encode(anchors[rows], target["boxes"][match[rows]]),
                              atol=1e-12)
        assert bool((goal[match < 0] == 0).all())
        ltrb.append(goal)
        truth.append(target["boxes"][match.clamp(min=0)] if count else torch.zeros(len(anchors), 4, dtype=torch.float64))
    ltrb, truth = torch.stack(ltrb), torch.stack(truth)
    classification = REF.sigmoid_focal_loss(outputs["cls_logits"], onehot, reduction="sum") / positives
    decoded = BoxLinearCoder(True).decode(outputs["bbox_regression"], torch.stack([anchors] * images))
    giou = REF.generalized_box_iou(decoded[foreground], truth[foreground]).diagonal()
    regression = (1 - giou).sum() / positives
    centre = F.binary_cross_entropy_with_logits(outputs["bbox_ctrness"][..., 0][foreground],
                                                REF.centerness(ltrb[foreground]), reduction="sum") / positives
    assert torch.allclose(classification, want["classification"], atol=1e-10)
    assert torch.allclose(regression, want["bbox_regression"], atol=1e-5)  # torchvision adds eps = 1e-7
    assert torch.allclose(centre, want["bbox_ctrness"], atol=1e-10)


def test_centerness_of_a_batch_keeps_its_leading_dimensions():
    ltrb = torch.rand(2, 3, 5, 4, dtype=torch.float64) + 0.1
    assert REF.centerness(ltrb).shape == (2, 3, 5)
    assert torch.allclose(REF.centerness(ltrb)[1, 2], REF.centerness(ltrb[1, 2]))


@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 12), st.integers(0, 12), st.sampled_from(["normal", "ties", "wide"]))
def test_hungarian_match_reaches_scipys_least_total_cost(seed, count, extra, kind):
    g = torch.Generator().manual_seed(seed)
    shape = (count + extra, count)
    if kind == "ties":
        cost = torch.randint(0, 3, shape, generator=g).double()
    else:
        cost = torch.randn(shape, generator=g, dtype=torch.float64) * (100 if kind == "wide" else 1)
    rows, cols = REF.hungarian_match(cost)
    assert rows.dtype == cols.dtype == torch.int64 and rows.shape == cols.shape == (count,)
    assert rows.tolist() == sorted(set(rows.tolist())) and sorted(cols.tolist()) == list(range(count))
    best_rows, best_cols = linear_sum_assignment(cost.numpy())
    assert math.isclose(float(cost[rows, cols].sum()), float(cost.numpy()[best_rows, best_cols].sum()),
                        rel_tol=1e-12, abs_tol=1e-9)
    if kind != "ties":  # continuous costs: the optimum is unique, and so are the pairs
        assert rows.tolist() == best_rows.tolist() and cols.tolist() == best_cols.tolist()


def test_hungarian_match_refuses_more_columns_than_rows():
    with pytest.raises(ValueError):
        REF.hungarian_match(torch.rand(2, 3))


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 15), st.integers(1, 5), st.integers(0, 6), st.sampled_from([0.1, 0.5]),
       st.sampled_from([(1, 5, 2), (2, 1, 1)]))
def test_detr_loss_equals_detrs_set_criterion_rebuilt_from_torchvision_and_scipy(seed, queries, classes, count, eos,
                                                                                 weights):
    g = torch.Generator().manual_seed(seed)
    count = min(count, queries)
    logits = torch.randn(queries, classes + 1, generator=g, dtype=torch.float64)
    pred = torch.cat([torch.rand(queries, 2, generator=g, dtype=torch.float64) * 0.6 + 0.2,
                      torch.rand(queries, 2, generator=g, dtype=torch.float64) * 0.3 + 0.05], 1)
    labels = torch.randint(0, classes, (count,), generator=g)
    truth = torch.cat([torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.6 + 0.2,
                       torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.3 + 0.05], 1)
    ours = REF.detr_loss(logits, pred, labels, truth, eos, weights)
    theirs = expected_detr_loss(logits, pred, labels, truth, eos, weights)
    assert set(ours) == {"loss_ce", "loss_bbox", "loss_giou"}
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-10) for k in ours)


# Wrong answers lose points where their mistake is named -----------------------------------------

FOCAL = '''
def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    log_p, log_not_p = F.logsigmoid(inputs), F.logsigmoid(-inputs)
    p = torch.sigmoid(inputs)
    positive = targets > 0.5
    p_t = torch.where(positive, p, 1 - p)
    log_p_t = torch.where(positive, log_p, log_not_p)
    loss = -(1 - p_t) ** gamma * log_p_t
    if alpha >= 0:
        loss = loss * torch.where(positive, alpha, 1 - alpha)
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError("unknown reduction")
'''

GIOU = '''
def generalized_box_iou(boxes1, boxes2):
    ax1, ay1, ax2, ay2 = (boxes1[:, k:k + 1] for k in range(4))
    bx1, by1, bx2, by2 = (boxes2[:, k] for k in range(4))
    inter_w = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    inter_h = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    inter = inter_w * inter_h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    hull = (torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)) * (torch.maximum(ay2, by2) - torch.minimum(ay1, by1))
    return inter / union - (hull - union) / hull
'''

MATCH = '''
def fcos_match(anchors, gt_boxes, num_anchors_per_level, center_sampling_radius=1.5):
    result = []
    start = 0
    levels = len(num_anchors_per_level)
    for level, count in enumerate(num_anchors_per_level):
        a = anchors[start:start + count]
        start += count
        found = torch.full((count,), -1, dtype=torch.int64, device=anchors.device)
        if len(gt_boxes):
            s = (a[:, 2] - a[:, 0])[:, None]
            x = ((a[:, 0] + a[:, 2]) / 2)[:, None]
            y = ((a[:, 1] + a[:, 3]) / 2)[:, None]
            x1, y1, x2, y2 = gt_boxes.unbind(1)
            l, t, r, b = x - x1, y - y1, x2 - x, y2 - y
            ok = ((x - (x1 + x2) / 2).abs() < center_sampling_radius * s) & \\
                ((y - (y1 + y2) / 2).abs() < center_sampling_radius * s)
            ok &= (l > 0) & (t > 0) & (r > 0) & (b > 0)
            reach = torch.maximum(torch.maximum(l, t), torch.maximum(r, b))
            if level > 0:
                ok &= reach > 4 * s
            if level < levels - 1:
                ok &= reach < 8 * s
            area = (x2 - x1) * (y2 - y1)
            order = torch.argsort(area, stable=True)
            ranked = ok[:, order]
            first = ranked.int().argmax(1)
            found = torch.where(ranked.any(1), order[first], found)
        result.append(found)
    return torch.cat(result)
'''

TARGETS = '''
def fcos_targets(anchors, gt_boxes, matched_idxs):
    out = anchors.new_zeros(anchors.shape)
    rows = torch.nonzero(matched_idxs >= 0).reshape(-1)
    if len(rows) == 0:
        return out
    a, g = anchors[rows], gt_boxes[matched_idxs[rows]]
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    values = torch.stack([(cx - g[:, 0]) / w, (cy - g[:, 1]) / h, (g[:, 2] - cx) / w, (g[:, 3] - cy) / h], 1)
    return out.index_put((rows,), values)
'''

CENTRE = '''
def centerness(ltrb):
    l, t, r, b = ltrb.unbind(-1)
    horizontal = torch.minimum(l, r) / torch.maximum(l, r)
    vertical = torch.minimum(t, b) / torch.maximum(t, b)
    return torch.sqrt(horizontal * vertical)
'''

HUNGARIAN = '''
def hungarian_match(cost):
    Q, G = cost.shape
    if G == 0:
        nothing = torch.zeros(0, dtype=torch.int64, device=cost.device)
        return nothing, nothing.clone()
    a = cost.detach().cpu().double().t().tolist()  # G rows, Q columns
    n, m = G, Q
    INF = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    p, way = [0] * (m + 1), [0] * (m + 1)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [INF] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], INF, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = a[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = sorted((j - 1, p[j] - 1) for j in range(1, m + 1) if p[j])
    rows = torch.tensor([r for r, _ in pairs], dtype=torch.int64, device=cost.device)
    cols = torch.tensor([c for _, c in pairs], dtype=torch.int64, device=cost.device)
    return rows, cols
'''

DETR = '''
def detr_loss(pred_logits, pred_boxes, gt_labels, gt_boxes, eos_coef=0.1, weights=(1, 5, 2)):
    Q, C = pred_logits.shape
    G = len(gt_labels)

    def xyxy(b):
        cx, cy, w, h = b.unbind(-1)
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)

    logits, boxes = pred_logits.detach(), pred_boxes.detach()
    cost = (-weights[0] * logits.softmax(-1)[:, gt_labels] + weights[1] * torch.cdist(boxes, gt_boxes, p=1)
            - weights[2] * generalized_box_iou(xyxy(boxes), xyxy(gt_boxes)))
    rows, cols = hungarian_match(cost)
    target = torch.full((Q,), C - 1, dtype=torch.int64, device=pred_logits.device)
    target[rows] = gt_labels[cols]
    log_p = pred_logits.log_softmax(-1)
    picked = -log_p[torch.arange(Q, device=pred_logits.device), target]
    w = torch.where(target == C - 1, eos_coef, 1.0).to(pred_logits.dtype)
    loss_ce = (w * picked).sum() / w.sum()
    n = max(G, 1)
    matched, truth = pred_boxes[rows], gt_boxes[cols]
    loss_bbox = (matched - truth).abs().sum() / n
    pair_giou = generalized_box_iou(xyxy(matched), xyxy(truth))
    loss_giou = (1 - torch.diagonal(pair_giou)).sum() / n
    return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
'''


def changed(code: str, old: str, new: str) -> str:
    assert old in code, old
    return code.replace(old, new)


WRONG = {
    # sigmoid_focal_loss
    "alpha weights the negatives": ("sigmoid-focal-loss", changed(FOCAL, "torch.where(positive, alpha, 1 - alpha)",
                                                                  "torch.where(positive, 1 - alpha, alpha)"),
                                    "alpha_t = alpha for a target 1", ()),
    "the modulating factor p_t^gamma": ("sigmoid-focal-loss", changed(FOCAL, "-(1 - p_t) ** gamma", "-p_t ** gamma"),
                                        "(1 - p_t)^gamma", ()),
    "log of the sigmoid": ("sigmoid-focal-loss", changed(FOCAL, "F.logsigmoid(inputs), F.logsigmoid(-inputs)",
                                                         "torch.log(torch.sigmoid(inputs)), torch.log(1 - torch.sigmoid(inputs))"),
                           "numerically stable", ()),
    "a negative alpha still weights": ("sigmoid-focal-loss", changed(FOCAL, "if alpha >= 0:", "if alpha is not None:"),
                                       "a negative alpha switches the weighting off", ()),
    "any other reduction is a sum": ("sigmoid-focal-loss", changed(FOCAL, 'raise ValueError("unknown reduction")',
                                                                   "return loss.sum()"),
                                     "must raise a ValueError", ()),
    # generalized_box_iou
    "plain IoU": ("generalized-box-iou", changed(GIOU, "return inter / union - (hull - union) / hull",
                                                 "return inter / union"), "GIoU near -1", ("detr_loss",)),
    "the enclosing term divided by the union": ("generalized-box-iou", changed(GIOU, "(hull - union) / hull",
                                                                               "(hull - union) / union"),
                                                "(|C| - |A u B|) / |C|", ("detr_loss",)),
    "the union keeps the intersection": ("generalized-box-iou", changed(GIOU, " - inter\n", "\n"),
                                         "|A u B| = |A| + |B| - |A n B|", ("detr_loss",)),
    # Every pair in plain Python floats (the quickest loop a student writes: about 2 s for the speed
    # check's 1000 x 1000 boxes, 30 times the reference; a loop of tensor operations per pair takes
    # minutes and fails the same way, only after the call's time limit). Floats have no gradient:
    # detr_loss, which trains through it, loses points too.
    "a Python loop over pairs": ("generalized-box-iou", '''
def generalized_box_iou(boxes1, boxes2):
    second = boxes2.tolist()
    rows = []
    for ax1, ay1, ax2, ay2 in boxes1.tolist():
        row = []
        for bx1, by1, bx2, by2 in second:
            inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
            union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
            hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
            row.append(inter / union - (hull - union) / hull)
        rows.append(row)
    return torch.tensor(rows, dtype=boxes1.dtype, device=boxes1.device).reshape(len(boxes1), len(boxes2))
''', "not in a Python loop over boxes", ("detr_loss",)),  # no gradient for DETR's GIoU loss
    # fcos_match
    "no centre sampling": ("fcos-match", changed(MATCH, "ok = ((x - (x1 + x2) / 2).abs() < center_sampling_radius * s) & \\\n"
                                                        "                ((y - (y1 + y2) / 2).abs() < center_sampling_radius * s)",
                           "ok = torch.ones_like(x - x1, dtype=torch.bool)"), "centre sampling", ()),
    "the largest box wins": ("fcos-match", changed(MATCH, "torch.argsort(area, stable=True)",
                                                   "torch.argsort(-area, stable=True)"), "smallest area", ()),
    "every level closed at both ends": ("fcos-match", changed(changed(MATCH, "if level > 0:\n", "if True:\n"),
                                                              "if level < levels - 1:", "if True:"),
                                        "the first and the last", ()),
    "the radius in pixels": ("fcos-match", MATCH.replace("center_sampling_radius * s", "center_sampling_radius"),
                             "radius x s", ()),
    "a point on the border is inside": ("fcos-match", changed(MATCH, "(l > 0) & (t > 0) & (r > 0) & (b > 0)",
                                                              "(l >= 0) & (t >= 0) & (r >= 0) & (b >= 0)"),
                                        "not inside it", ()),
    # The loop students write: point by point, with tensor operations over the objects (about 50
    # times the reference on the speed check's 13,343 points; a double loop in Python floats is
    # nearer 15 times, too close to the limit of 5 on a loaded machine to name the mistake surely).
    "a loop over points": ("fcos-match", '''
def fcos_match(anchors, gt_boxes, num_anchors_per_level, center_sampling_radius=1.5):
    out = torch.full((len(anchors),), -1, dtype=torch.int64, device=anchors.device)
    if len(gt_boxes) == 0:
        return out
    first, last = num_anchors_per_level[0], len(anchors) - num_anchors_per_level[-1]
    x1, y1, x2, y2 = gt_boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    for n in range(len(anchors)):
        ax1, ay1, ax2, ay2 = anchors[n]
        s, x, y = ax2 - ax1, (ax1 + ax2) / 2, (ay1 + ay2) / 2
        sides = torch.stack([x - x1, y - y1, x2 - x, y2 - y], 1)
        reach = sides.amax(1)
        ok = (torch.maximum((x - cx).abs(), (y - cy).abs()) < center_sampling_radius * s) & (sides.amin(1) > 0)
        if n >= first:
            ok &= reach > 4 * s
        if n < last:
            ok &= reach < 8 * s
        if ok.any():
            out[n] = torch.where(ok, area, torch.inf).argmin()
    return out
''', "not in a Python loop over points", ()),
    # fcos_targets
    "targets in pixels": ("fcos-targets", changed(TARGETS, "torch.stack([(cx - g[:, 0]) / w, (cy - g[:, 1]) / h, "
                                                           "(g[:, 2] - cx) / w, (g[:, 3] - cy) / h], 1)",
                                                  "torch.stack([cx - g[:, 0], cy - g[:, 1], g[:, 2] - cx, g[:, 3] - cy], 1)"),
                          "divided by the anchor's width w and height h", ()),
    "the order (l, r, t, b)": ("fcos-targets", changed(TARGETS, "(cy - g[:, 1]) / h, (g[:, 2] - cx) / w",
                                                       "(g[:, 2] - cx) / w, (cy - g[:, 1]) / h"),
                               "(l, t, r, b) = ((x - x1) / w", ()),
    "background points keep object 0": ("fcos-targets", '''
def fcos_targets(anchors, gt_boxes, matched_idxs):
    if len(gt_boxes) == 0:
        return anchors.new_zeros(anchors.shape)
    g = gt_boxes[matched_idxs.clamp(min=0)]
    w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    return torch.stack([(cx - g[:, 0]) / w, (cy - g[:, 1]) / h, (g[:, 2] - cx) / w, (g[:, 3] - cy) / h], 1)
''', "must have the targets 0", ()),
    "everything divided by the width": ("fcos-targets", TARGETS.replace(") / h", ") / w"),
                                        "divided by the anchor's width w and height h", ()),
    # centerness
    "no square root": ("centerness", changed(CENTRE, "torch.sqrt(horizontal * vertical)", "horizontal * vertical"),
                       "sqrt(min(l, r) / max(l, r)", ()),
    "l paired with t": ("centerness", changed(CENTRE, "l, t, r, b = ltrb.unbind(-1)", "l, r, t, b = ltrb.unbind(-1)"),
                        "swapping l and r", ()),
    "the extremes of all four": ("centerness", '''
def centerness(ltrb):
    return torch.sqrt(ltrb.amin(-1) / ltrb.amax(-1))
''', "not over all four", ()),
    "rows of a matrix only": ("centerness", '''
def centerness(ltrb):
    l, t, r, b = ltrb[:, 0], ltrb[:, 1], ltrb[:, 2], ltrb[:, 3]
    return torch.sqrt(torch.minimum(l, r) / torch.maximum(l, r) * torch.minimum(t, b) / torch.maximum(t, b))
''', "of the last dimension", ()),
    # hungarian_match
    "greedy, column by column": ("hungarian-match", '''
def hungarian_match(cost):
    Q, G = cost.shape
    taken, pairs = set(), []
    for g in range(G):
        order = torch.argsort(cost[:, g]).tolist()
        q = next(q for q in order if q not in taken)
        taken.add(q)
        pairs.append((q, g))
    pairs.sort()
    rows = torch.tensor([q for q, _ in pairs], dtype=torch.int64, device=cost.device)
    cols = torch.tensor([g for _, g in pairs], dtype=torch.int64, device=cost.device)
    return rows, cols
''', "not the lowest total cost", ("detr_loss",)),
    "sorted by column": ("hungarian-match", changed(HUNGARIAN, "pairs = sorted((j - 1, p[j] - 1) for j in range(1, m + 1) if p[j])",
                                                    "pairs = sorted(((j - 1, p[j] - 1) for j in range(1, m + 1) if p[j]), key=lambda x: x[1])"),
                         "sorted by row", ()),
    "maximised": ("hungarian-match", changed(HUNGARIAN, "a = cost.detach().cpu().double().t().tolist()",
                                             "a = (-cost).detach().cpu().double().t().tolist()"),
                  "minimised, not maximised", ("detr_loss",)),
    "each column's cheapest row, shared": ("hungarian-match", '''
def hungarian_match(cost):
    cols = torch.arange(cost.shape[1], device=cost.device)
    rows = cost.argmin(0) if cost.shape[1] else cols.clone()
    order = torch.argsort(rows, stable=True)
    return rows[order], cols[order]
''', "a prediction takes at most one object", ("detr_loss",)),
    # detr_loss
    "no weight for 'no object'": ("detr-loss", changed(DETR, "torch.where(target == C - 1, eos_coef, 1.0)",
                                                      "torch.where(target == C - 1, 1.0, 1.0)"),
                                  "'no object' targets weigh eos_coef", ()),
    "box terms averaged over the predictions": ("detr-loss", changed(DETR, "n = max(G, 1)", "n = Q"),
                                                "divided by the number of objects", ()),
    "predictions matched in order": ("detr-loss", changed(DETR, "rows, cols = hungarian_match(cost)",
                                                          "rows = cols = torch.arange(G, device=pred_logits.device)"),
                                     "the matching minimises C", ()),
    "GIoU of centres and sizes": ("detr-loss", changed(DETR, "generalized_box_iou(xyxy(matched), xyxy(truth))",
                                                       "generalized_box_iou(matched, truth)"),
                                  "turned into corners", ()),
    "cross-entropy of the matched predictions only": ("detr-loss", changed(
        DETR, "loss_ce = (w * picked).sum() / w.sum()", "loss_ce = picked[rows].mean() if G else picked.sum() * 0"),
        "every prediction counts, matched or not", ()),
    "divided by zero without objects": ("detr-loss", changed(DETR, "n = max(G, 1)", "n = G"),
                                        "divide by max(G, 1)", ()),
}


# The two slow answers (the loops the speed checks stop, 10 to 20 s each) in different groups.
SLOW = ["a Python loop over pairs", "a loop over points"]
GROUPS = graded_together(ASSIGNMENT, WRONG, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, WRONG, mistakes, timed=SLOW)


DIFFERENT_BUT_RIGHT = {"sigmoid-focal-loss": FOCAL, "generalized-box-iou": GIOU, "fcos-match": MATCH,
                       "fcos-targets": TARGETS, "centerness": CENTRE, "hungarian-match": HUNGARIAN, "detr-loss": DETR}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)


# The library calls that would skip the exercise earn nothing ------------------------------------

def test_every_graded_function_bans_the_library_versions_of_its_exercise():
    spec = assignments.load(ASSIGNMENT)
    assert set(spec.banned) == set(spec.functions)
    library = {"torchvision.ops", "torchvision.ops.sigmoid_focal_loss", "torchvision.ops.generalized_box_iou",
               "torchvision.ops.generalized_box_iou_loss", "torchvision.ops.box_iou", "torchvision.models.detection",
               "torchvision.models.detection.fcos.FCOS.compute_loss", "odcourse"}
    solvers = {"scipy", "scipy.optimize.linear_sum_assignment", "networkx", "odcourse"}
    for name in ("sigmoid_focal_loss", "generalized_box_iou", "fcos_match", "fcos_targets", "centerness"):
        assert library <= set(spec.banned[name]) and "torchvision::*" in spec.operators[name], name
    assert solvers | {"torch.linalg"} <= set(spec.banned["hungarian_match"])
    assert library | solvers <= set(spec.banned["detr_loss"])


BANNED_ANSWERS = {
    "sigmoid-focal-loss": ("torchvision.ops.sigmoid_focal_loss", '''
from torchvision.ops import sigmoid_focal_loss as focal


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    return focal(inputs, targets, alpha, gamma, reduction)
'''),
    # box_iou inside an otherwise hand-written GIoU, reached through another module that holds it
    "generalized-box-iou": ("torchvision.ops.box_iou", '''
import torchvision.models.detection.fcos as fcos_module


def generalized_box_iou(boxes1, boxes2):
    iou = fcos_module.box_ops.box_iou(boxes1, boxes2)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    inter = torch.where(iou > 0, iou * (area1[:, None] + area2[None]) / (1 + iou), torch.zeros_like(iou))
    union = area1[:, None] + area2[None] - inter
    lt = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    hull = (rb - lt).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull
'''),
    # FCOSHead's coder: its method is reached through an instance, so the grader names its module
    "fcos-targets": ("torchvision.models.detection", '''
from torchvision.models.detection._utils import BoxLinearCoder


def fcos_targets(anchors, gt_boxes, matched_idxs):
    out = anchors.new_zeros(anchors.shape)
    rows = torch.nonzero(matched_idxs >= 0).reshape(-1)
    if len(rows):
        out[rows] = BoxLinearCoder(normalize_by_size=True).encode(anchors[rows], gt_boxes[matched_idxs[rows]])
    return out
'''),
    "hungarian-match": ("scipy.optimize.linear_sum_assignment", '''
from scipy.optimize import linear_sum_assignment


def hungarian_match(cost):
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return (torch.as_tensor(rows, dtype=torch.int64, device=cost.device),
            torch.as_tensor(cols, dtype=torch.int64, device=cost.device))
'''),
    "detr-loss": ("torchvision.ops.generalized_box_iou_loss", DETR.replace(
        "pair_giou = generalized_box_iou(xyxy(matched), xyxy(truth))\n    loss_giou = (1 - torch.diagonal(pair_giou)).sum() / n",
        "loss_giou = torchvision.ops.generalized_box_iou_loss(xyxy(matched), xyxy(truth), reduction='sum') / n")),
}


@pytest.mark.slow
def test_a_library_call_that_skips_the_exercise_earns_nothing_and_says_which(tmp_path):
    """One grading: each answer names its banned call (or reaches it through another module), is
    refused before it runs, scores 0, and its tests say which call."""
    answers = {grade_id: code for grade_id, (_, code) in BANNED_ANSWERS.items()}
    assert "torchvision.ops.generalized_box_iou_loss" in answers["detr-loss"]
    answers["detr-loss"] = "import torchvision\n" + answers["detr-loss"]
    spec = assignments.load(ASSIGNMENT)
    functions = {spec.function_of(grade_id) for grade_id in answers}
    result = grade(ASSIGNMENT, tmp_path, answers, only=functions)
    got = scores(result)
    assert set(got) == functions
    for grade_id, (name, _) in BANNED_ANSWERS.items():
        function = spec.function_of(grade_id)
        assert got[function][0] == 0 < got[function][1], (function, got[function])
        outputs = [t["output"] for t in result["tests"] if t["tags"] == [function]]
        assert all(name in output and "does not allow" in output for output in outputs), (function, outputs)
