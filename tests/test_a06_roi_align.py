"""Proofs for a06-roi-align: the reference equals torchvision (roi_align forward and gradient, its
bilinear sampling, project_masks_on_boxes, maskrcnn_loss, paste_masks_in_image); plausible wrong
answers lose points on the test that names the mistake; right answers written differently (points
sampled and interpolated one by one instead of interpolation matrices) earn full marks."""
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection.roi_heads import maskrcnn_loss, paste_masks_in_image, project_masks_on_boxes

from coursetools.reference import load_reference
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together

ASSIGNMENT = "a06-roi-align"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=80, deadline=None, database=None)


def torchvision_value_at(feature, y, x):
    """torchvision's own bilinear sampling at (y, x): ROI Align of an empty aligned box with one
    sample sits exactly at its corner."""
    boxes = torch.stack([torch.zeros_like(y), x + 0.5, y + 0.5, x + 0.5, y + 0.5], 1)
    return torchvision.ops.roi_align(feature[None], boxes, 1, 1.0, 1, True)[:, :, 0, 0].T


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 12), st.integers(1, 12), st.integers(0, 50))
def test_bilinear_interpolate_equals_torchvisions_sampling(seed, h, w, n):
    g = torch.Generator().manual_seed(seed)
    feature = torch.randn(3, h, w, generator=g, dtype=torch.float64)
    y = torch.rand(n, generator=g, dtype=torch.float64) * (h + 4) - 2
    x = torch.rand(n, generator=g, dtype=torch.float64) * (w + 4) - 2
    y[: n // 4] = y[: n // 4].round()  # whole numbers: the borders -1, 0, H - 1 and H among them
    assert torch.allclose(REF.bilinear_interpolate(feature, y, x), torchvision_value_at(feature, y, x), atol=1e-12)


ALIGN = (st.integers(0, 10**6), st.integers(1, 3), st.integers(1, 14), st.integers(1, 14), st.integers(0, 20),
         st.sampled_from([1, 2, 3, 7, (2, 5)]), st.sampled_from([1.0, 0.5, 0.25, 0.6]),
         st.sampled_from([-1, 0, 1, 2, 3]), st.booleans())


@PROPERTY
@given(*ALIGN)
def test_roi_align_equals_torchvision_forward_and_gradient(seed, n, h, w, k, size, scale, ratio, aligned):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, h, w, generator=g, dtype=torch.float64)
    corner = torch.rand(k, 2, generator=g, dtype=torch.float64) * 40 - 8
    # Inverted boxes (x2 < x1) only with a fixed sampling ratio: with aligned=True and an adaptive one
    # torchvision asks for a negative number of samples and fails (the assignment gives 0).
    inverted = 2 if ratio > 0 else 0
    boxes = torch.cat([torch.randint(0, n, (k, 1), generator=g).double(), corner,
                       corner + torch.rand(k, 2, generator=g, dtype=torch.float64) * 30 - inverted], 1)
    leaf, oracle_leaf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = REF.roi_align(leaf, boxes, size, scale, ratio, aligned)
    want = torchvision.ops.roi_align(oracle_leaf, boxes, size, scale, ratio, aligned)
    assert torch.allclose(got, want, atol=1e-12)
    if k:
        upstream = torch.randn(want.shape, generator=g, dtype=torch.float64)
        assert torch.allclose(torch.autograd.grad(got, leaf, upstream)[0],
                              torch.autograd.grad(want, oracle_leaf, upstream)[0], atol=1e-12)


def test_roi_align_float32_on_detector_sizes_equals_torchvision():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 64, 50, 50, generator=g)
    corner = torch.rand(300, 2, generator=g) * 700
    boxes = torch.cat([torch.randint(0, 2, (300, 1), generator=g).float(), corner,
                       corner + torch.rand(300, 2, generator=g) * 400], 1)
    for ratio in (-1, 2):
        got = REF.roi_align(x, boxes, 7, 1 / 16, ratio, False)
        assert torch.allclose(got, torchvision.ops.roi_align(x, boxes, 7, 1 / 16, ratio, False), atol=1e-5)


def shapes(seed, gt, n):
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(24.0), torch.arange(30.0), indexing="ij")
    centres = torch.rand(gt, 2, generator=g) * torch.tensor([24.0, 30.0])
    radii = 2 + torch.rand(gt, 2, generator=g) * 6
    masks = ((((rows - centres[:, 0, None, None]) / radii[:, 0, None, None]) ** 2
              + ((cols - centres[:, 1, None, None]) / radii[:, 1, None, None]) ** 2) <= 1).to(torch.uint8)
    matched = torch.randint(0, gt, (n,), generator=g)
    boxes = torch.cat([centres.flip(1) - radii.flip(1), centres.flip(1) + radii.flip(1)], 1)[matched]
    return masks, boxes + (torch.rand(n, 4, generator=g) - 0.5) * 4, matched, g


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 5), st.integers(0, 12), st.sampled_from([7, 14, 28]),
       st.integers(2, 6))
def test_mask_targets_and_loss_equal_torchvision(seed, gt, n, m, classes):
    masks, proposals, matched, g = shapes(seed, gt, n)
    assert torch.allclose(REF.mask_targets(masks, proposals, matched, m),
                          project_masks_on_boxes(masks, proposals, matched, m), atol=1e-6)
    labels = torch.randint(1, classes, (gt,), generator=g)
    logits = torch.randn(n, classes, m, m, generator=g)
    got = REF.maskrcnn_loss(logits, proposals, masks, labels, matched)
    assert torch.allclose(got, maskrcnn_loss(logits, [proposals], [masks], [labels], [matched]), atol=1e-6)


@PROPERTY
@given(st.integers(0, 10**6), st.sampled_from([5, 14, 28]), st.integers(1, 40), st.integers(1, 40))
def test_paste_mask_equals_torchvision(seed, m, height, width):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(m, m, generator=g)
    corner = torch.rand(2, generator=g) * torch.tensor([width, height]) * 1.4 - 8
    box = torch.cat([corner, corner + torch.rand(2, generator=g) * 30])
    got = REF.paste_mask(mask, box, (height, width))
    try:
        want = paste_masks_in_image(mask[None, None], box[None], (height, width))[0, 0]
    except RuntimeError:  # torchvision cannot paste a box that misses the image; nothing is pasted
        assert not got.any()
        return
    assert torch.allclose(got, want, atol=1e-6)


# Wrong answers lose points where their mistake is named -----------------------------------------

BILINEAR = '''
def bilinear_interpolate(input, y, x):
    C, H, W = input.shape
    y, x = y.to(input.dtype), x.to(input.dtype)
    out_of_map = {outside}
    y, x = {clamp}
    y0, x0 = y.floor().long(), x.floor().long()
    last_y, last_x = y0 >= H - 1, x0 >= W - 1
    y0, x0 = torch.where(last_y, H - 1, y0), torch.where(last_x, W - 1, x0)
    y, x = torch.where(last_y, y0.to(y.dtype), y), torch.where(last_x, x0.to(x.dtype), x)
    y1, x1 = torch.where(last_y, y0, y0 + 1), torch.where(last_x, x0, x0 + 1)
    ly, lx = y - y0, x - x0
    v = {value}
    return {result}
'''
BILINEAR_PARTS = dict(outside="(y < -1) | (y > H) | (x < -1) | (x > W)", clamp="y.clamp(min=0), x.clamp(min=0)",
                      value="((1 - ly) * (1 - lx) * input[:, y0, x0] + (1 - ly) * lx * input[:, y0, x1]\n"
                            "         + ly * (1 - lx) * input[:, y1, x0] + ly * lx * input[:, y1, x1])",
                      result="torch.where(out_of_map, torch.zeros_like(v), v)")


def bilinear(**changes):
    return BILINEAR.format(**{**BILINEAR_PARTS, **changes})


# A student's roi_align: every sample's coordinates, interpolated with bilinear_interpolate, averaged.
ALIGN_CODE = '''
def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    h, w = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, c, H, W = input.shape
    k = len(boxes)
    if k == 0:
        return {empty}
    offset = {offset}
    x1, y1, x2, y2 = (boxes[:, 1:].to(input.dtype) * spatial_scale - offset).unbind(1)
    rw, rh = x2 - x1, y2 - y1
    {min_size}
    if sampling_ratio > 0:
        gh = gw = torch.full((k,), sampling_ratio, device=input.device)
    else:
        {grid}
    most = max(int(gh.max()) if k else 1, int(gw.max()) if k else 1, 1)
    t = torch.arange(most, dtype=input.dtype, device=input.device)
    p = torch.arange(h, dtype=input.dtype, device=input.device)
    q = torch.arange(w, dtype=input.dtype, device=input.device)
    bh, bw = rh / h, rw / w
    ys = y1[:, None, None] + p[None, :, None] * bh[:, None, None] + (t + 0.5) * (bh / gh.clamp(min=1))[:, None, None]
    xs = x1[:, None, None] + q[None, :, None] * bw[:, None, None] + (t + 0.5) * (bw / gw.clamp(min=1))[:, None, None]
    weight = ((t < gh[:, None]).to(input.dtype)[:, None, None, :, None] * (t < gw[:, None]).to(input.dtype)[:, None, None, None, :]
              / {count}[:, None, None, None, None])
    out = input.new_zeros(k, c, h, w)
    image = boxes[:, 0].long()
    for b in range(n):
        sel = (image == b).nonzero().squeeze(1)
        if len(sel) == 0:
            continue
        Y = ys[sel][:, :, None, :, None].expand(-1, h, w, most, most)
        X = xs[sel][:, None, :, None, :].expand(-1, h, w, most, most)
        values = bilinear_interpolate(input[b], Y, X)  # c, k', h, w, most, most
        out = out.index_put((sel,), (values * weight[sel]).sum((-1, -2)).transpose(0, 1))
    return {result}
'''
ALIGN_PARTS = dict(offset="0.5 if aligned else 0.0",
                   min_size="if not aligned:\n        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)",
                   grid="gh, gw = torch.ceil(rh / h).long(), torch.ceil(rw / w).long()",
                   count="(gh * gw).clamp(min=1)", result="out",
                   empty="input[:0, :, :1, :1].expand(0, c, h, w) * 1.0")


def align(**changes):
    return ALIGN_CODE.format(**{**ALIGN_PARTS, **changes})


TARGETS = '''
def mask_targets(gt_masks, proposals, matched_idxs, M):
    rois = torch.cat([{index}.to(proposals.dtype)[:, None], proposals], dim=1)
    return roi_align(gt_masks[:, None].to(proposals.dtype), rois, (M, M), 1.0, {ratio}, {aligned})[:, 0]
'''
TARGETS_PARTS = dict(index="matched_idxs", ratio="-1", aligned="False")


def targets(**changes):
    return TARGETS.format(**{**TARGETS_PARTS, **changes})


LOSS = '''
def maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs):
    M = mask_logits.shape[-1]
    target = mask_targets(gt_masks, proposals, mask_matched_idxs, M)
    if len(proposals) == 0:
        return {empty}
    labels = {labels}
    chosen = mask_logits[torch.arange(len(labels), device=labels.device), labels]
    return {loss}
'''
LOSS_PARTS = dict(empty="mask_logits.sum() * 0", labels="gt_labels[mask_matched_idxs]",
                  loss="F.binary_cross_entropy_with_logits(chosen, target)")


def loss(**changes):
    return LOSS.format(**{**LOSS_PARTS, **changes})


PASTE = '''
def paste_mask(mask, box, image_size):
    H, W = image_size
    M = mask.shape[-1]
    pad = {pad}
    padded = F.pad(mask, (pad, pad, pad, pad))
    scale = (M + 2 * pad) / M
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) / 2 * scale, (box[3] - box[1]) / 2 * scale
    corners = torch.stack([cx - hw, cy - hh, cx + hw, cy + hh])
    x1, y1, x2, y2 = [int(v) for v in {integer}]
    w, h = max(x2 - x1 + {plus}, 1), max(y2 - y1 + {plus}, 1)
    resized = F.interpolate(padded[None, None], size=(h, w), mode="bilinear", align_corners={corners})[0, 0]
    out = torch.zeros(H, W, dtype=mask.dtype, device=mask.device)
    top, bottom, left, right = max(y1, 0), min(y1 + h, H), max(x1, 0), min(x1 + w, W)
    if bottom > top and right > left:
        out[top:bottom, left:right] = resized[top - y1:bottom - y1, left - x1:right - x1]
    return out
'''
PASTE_PARTS = dict(pad="1", integer="corners.to(torch.int64)", plus="1", corners="False")


def paste(**changes):
    return PASTE.format(**{**PASTE_PARTS, **changes})


WRONG = {
    # bilinear_interpolate
    "-1 and H counted as outside": ("bilinear-interpolate", bilinear(
        outside="(y <= -1) | (y >= H) | (x <= -1) | (x >= W)"), "themselves are inside", ()),
    "no zero outside the map": ("bilinear-interpolate", bilinear(result="v"), "gives 0", ()),
    "negative coordinates not set to 0": ("bilinear-interpolate", bilinear(clamp="y, x"),
                                          "negative coordinates become 0", ()),
    "weights of the wrong corners": ("bilinear-interpolate", bilinear(
        value="((1 - ly) * (1 - lx) * input[:, y0, x0] + ly * (1 - lx) * input[:, y0, x1]\n"
              "         + (1 - ly) * lx * input[:, y1, x0] + ly * lx * input[:, y1, x1])"), "the 4 neighbours weighted",
        ("roi_align", "mask_targets", "maskrcnn_loss")),
    # roi_align
    "aligned ignored": ("roi-align", align(offset="0.0"), "-0.5 when aligned", ("mask_targets", "maskrcnn_loss")),
    "two samples per side when sampling_ratio is -1": ("roi-align", align(
        grid="gh = gw = torch.full((k,), 2, device=input.device)"), "each region has its own grid",
        ("mask_targets", "maskrcnn_loss")),
    "malformed boxes raised to 1 x 1 when aligned too": ("roi-align", align(
        min_size="rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)"), "only when not aligned",
        ("mask_targets", "maskrcnn_loss")),
    "result detached from the input": ("roi-align", align(result="out.detach()"),
                                       "build the output from input with differentiable operations",
                                       ("mask_targets", "maskrcnn_loss")),
    "no regions answered without a graph": ("roi-align", align(empty="input.new_zeros(0, c, h, w)"),
                                            "roi_align of no regions must still be built from input", ()),
    # mask_targets
    "aligned=True": ("mask-targets", targets(aligned="True"), "aligned=False", ("maskrcnn_loss",)),
    "a fixed sampling ratio of 2": ("mask-targets", targets(ratio="2"), "sampling_ratio -1", ("maskrcnn_loss",)),
    "every proposal given the first mask": ("mask-targets", targets(index="torch.zeros_like(matched_idxs)"),
                                            "matched mask", ("maskrcnn_loss",)),
    # maskrcnn_loss
    "labels shifted to exclude the background": ("maskrcnn-loss", loss(labels="gt_labels[mask_matched_idxs] - 1"),
                                                 "gt_labels[mask_matched_idxs]", ()),
    "every class's mask trained": ("maskrcnn-loss", loss(
        loss="F.binary_cross_entropy_with_logits(mask_logits, target[:, None].expand_as(mask_logits))"),
        "own class mask gets a gradient", ()),
    "summed over pixels": ("maskrcnn-loss", loss(
        loss="F.binary_cross_entropy_with_logits(chosen, target, reduction='sum')"), "averaged over all pixels", ()),
    "a constant zero with no proposals": ("maskrcnn-loss", loss(empty="torch.tensor(0.0)"), "still be connected", ()),
    # paste_mask
    "no padding": ("paste-mask", paste(pad="0"), "pad by one cell", ()),
    "floor instead of truncation": ("paste-mask", paste(integer="corners.floor().to(torch.int64)"),
                                    "truncate toward zero (not floor)", ()),
    "the box's end pixel left out": ("paste-mask", paste(plus="0"), "resize bilinearly to (y2 - y1 + 1)", ()),
    "corners aligned when resizing": ("paste-mask", paste(corners="True"), "resize bilinearly", ()),
}

# The reference's roi_align cell also holds its helper: a wrong roi_align keeps it.
MISTAKES = {name: (grade_id, REF.solution_source(grade_id) + "\n" + code if grade_id == "roi-align" else code,
                   phrase, dependents) for name, (grade_id, code, phrase, dependents) in WRONG.items()}
SLOW = []

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW)


DIFFERENT_BUT_RIGHT = {"bilinear-interpolate": bilinear(), "roi-align": align(), "mask-targets": targets(),
                       "maskrcnn-loss": loss(), "paste-mask": paste()}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
