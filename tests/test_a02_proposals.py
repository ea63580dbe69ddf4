"""Proofs for a02-proposals: the reference agrees with independent oracles (torchvision's box
ops, brute-force loops, a numpy re-implementation of the grouping that recomputes every region
from its pixels); plausible wrong answers lose points on the test that names the mistake; right
answers written differently earn full marks."""
import math
import textwrap

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from odcourse.data import make_scene
from odcourse.proposals import oversegment
from tests.conftest import ROOT
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together
from coursetools.reference import load_reference

ASSIGNMENT = "a02-proposals"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=60, deadline=None, database=None)


def boxes(seed, n, dtype=torch.float64, scale=100.0):
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    size = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale / 2
    size[: n // 5, 0] = 0  # some boxes of width 0
    return torch.cat([corner, corner + size], 1).to(dtype)


# The reference against independent oracles -----------------------------------------------------

@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 30), st.integers(0, 30), st.sampled_from([torch.float32, torch.float64]))
def test_box_area_and_iou_equal_torchvision(seed, n, m, dtype):
    a, b = boxes(seed, n, dtype), boxes(seed + 1, m, dtype)
    assert torch.equal(REF.box_area(a), torchvision.ops.box_area(a))
    got, want = REF.box_iou(a, b), torchvision.ops.box_iou(a, b)
    assert got.dtype == want.dtype and torch.allclose(got, want, atol=1e-7, equal_nan=True)


def test_box_ops_on_integers_and_half_precision_equal_torchvision():
    a, b = (boxes(3, 12) * 3).long(), (boxes(4, 7) * 3).long()
    assert torch.equal(REF.box_area(a), torchvision.ops.box_area(a))
    assert torch.allclose(REF.box_iou(a, b), torchvision.ops.box_iou(a, b), equal_nan=True)
    half = boxes(5, 9, torch.float16)
    assert REF.box_area(half).dtype == torchvision.ops.box_area(half).dtype == torch.float32


def brute_force_windows(image_size, sizes, ratios, stride):
    """The task's rules as plain loops over every position."""
    height, width = image_size
    found = []
    for s in sizes:
        for r in ratios:
            w, h = math.floor(s / math.sqrt(r) + 0.5), math.floor(s * math.sqrt(r) + 0.5)
            y = 0
            while y + h <= height:
                x = 0
                while x + w <= width:
                    found.append([x, y, x + w, y + h])
                    x += stride
                y += stride
    return torch.tensor(found, dtype=torch.float32).reshape(-1, 4)


@PROPERTY
@given(st.integers(1, 90), st.integers(1, 90), st.lists(st.integers(1, 70), min_size=1, max_size=3),
       st.lists(st.sampled_from([0.5, 1.0, 2.0, 0.3, 3.0]), min_size=1, max_size=3), st.integers(1, 20))
def test_sliding_windows_equal_brute_force(height, width, sizes, ratios, stride):
    assert torch.equal(REF.sliding_windows((height, width), sizes, ratios, stride),
                       brute_force_windows((height, width), sizes, ratios, stride))


def test_sliding_windows_count_of_the_chapter():
    # 640x480, one size and ratio, stride 8: (640-64)/8+1 = 73 columns, (480-64)/8+1 = 53 rows.
    assert len(REF.sliding_windows((480, 640), [64], [1.0], 8)) == 73 * 53


def pixel_grouping(image, segments, similarities):
    """Selective search's grouping in numpy, recomputing each region's statistics from its pixel
    mask (colour histograms of a union equal the size-weighted average, so without texture this
    is an independent route to the same merges)."""
    img = image.double().clamp(0, 1).numpy()
    labels = segments.numpy()
    height, width = labels.shape
    bins = np.minimum(np.floor(img * 25), 24).astype(int)
    masks = {r: labels == r for r in range(labels.max() + 1)}

    def stats(mask):
        rows, cols = np.nonzero(mask)
        hist = np.concatenate([np.bincount(bins[c][mask], minlength=25) for c in range(3)]) / (3 * mask.sum())
        return mask.sum(), [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], hist

    def touching(a, b):
        return bool((a[:, :-1] & b[:, 1:]).any() or (b[:, :-1] & a[:, 1:]).any()
                    or (a[:-1] & b[1:]).any() or (b[:-1] & a[1:]).any())

    def similarity(i, j):
        (si, bi, ci), (sj, bj, cj) = stats(masks[i]), stats(masks[j])
        around = (max(bi[2], bj[2]) - min(bi[0], bj[0])) * (max(bi[3], bj[3]) - min(bi[1], bj[1]))
        terms = {"colour": np.minimum(ci, cj).sum(), "size": 1 - (si + sj) / (height * width),
                 "fill": 1 - (around - si - sj) / (height * width)}
        return sum(terms[name] for name in similarities)

    found = [stats(masks[r])[1] for r in sorted(masks)]
    while True:
        pairs = [(i, j) for i in masks for j in masks if i < j and touching(masks[i], masks[j])]
        if not pairs:
            break
        scored = {pair: similarity(*pair) for pair in pairs}
        best = max(scored.values())
        i, j = min(pair for pair, value in scored.items() if value >= best - 1e-9)
        new = len(found)
        masks[new] = masks.pop(i) | masks.pop(j)
        found.append(stats(masks[new])[1])
    return torch.tensor(found, dtype=torch.float32)


@pytest.mark.parametrize("similarities", [("size",), ("fill",), ("colour",), ("colour", "size", "fill")])
@pytest.mark.parametrize("seed", [0, 1])
def test_selective_search_equals_the_pixel_grouping(similarities, seed):
    image = make_scene(seed, 0, size=48)[0]
    segments = oversegment(image, scale=30, min_size=8)
    assert 5 < int(segments.max()) + 1 < 60
    assert torch.equal(REF.selective_search(image, segments, similarities),
                       pixel_grouping(image, segments, similarities))


def test_selective_search_ends_with_each_connected_component():
    image = make_scene(2, 0, size=64)[0]
    segments = oversegment(image, scale=50, min_size=10)
    found = REF.selective_search(image, segments)
    count = int(segments.max()) + 1
    assert len(found) == 2 * count - 1  # a label map is connected: R - 1 merges
    assert found[-1].tolist() == [0, 0, 64, 64]
    assert bool((found[count:, :2] <= found[count:, 2:]).all())


def test_selective_search_keeps_the_device_and_inputs():
    image = make_scene(3, 0, size=48)[0]
    segments = oversegment(image, scale=30, min_size=8)
    before = image.clone(), segments.clone()
    found = REF.selective_search(image, segments)
    assert found.device == image.device and found.dtype == torch.float32
    assert torch.equal(image, before[0]) and torch.equal(segments, before[1])


def test_proposal_recall_equals_a_torchvision_count():
    gt = boxes(7, 10)
    proposals = torch.cat([gt[:4] + 1.0, boxes(8, 50)])
    best = torchvision.ops.box_iou(gt, proposals).max(dim=1).values
    for threshold in (0.3, 0.5, 0.7):
        assert REF.proposal_recall(proposals, gt, threshold) == pytest.approx((best >= threshold).double().mean().item())
    assert math.isnan(REF.proposal_recall(proposals, gt[:0], 0.5)) and REF.proposal_recall(gt[:0], gt, 0.5) == 0.0


# Wrong answers lose points where their mistake is named -----------------------------------------

# The task's rules for sliding_windows as plain loops; the wrong answers below change one passage.
WINDOWS_LOOP = """
def sliding_windows(image_size, window_sizes, aspect_ratios, stride):
    height, width = image_size
    out = []
    for s in window_sizes:
        for r in aspect_ratios:
            w, h = math.floor(s / math.sqrt(r) + 0.5), math.floor(s * math.sqrt(r) + 0.5)
            for y in range(0, height - h + 1, stride):
                for x in range(0, width - w + 1, stride):
                    out.append([x, y, x + w, y + h])
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 4)
"""


def windows_variant(old: str, new: str) -> str:
    """WINDOWS_LOOP with one passage changed, dedented as a student's cell."""
    source = textwrap.dedent(WINDOWS_LOOP)
    assert old in source, old
    return source.replace(old, new)


# proposal_recall uses box_iou, which uses box_area, as the notebook asks.
DEPENDENTS = {"box-area": {"box_iou", "proposal_recall"}, "box-iou": {"proposal_recall"}}
AREA_HEAD = "def box_area(boxes):\n"
IOU_HEAD = "def box_iou(boxes1, boxes2):\n"
WRONG = {
    # box_area
    "area with the +1 pixel convention": ("box-area", AREA_HEAD + """
        return (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
        """, "(x2 - x1) * (y2 - y1)"),
    "area always in float32": ("box-area", AREA_HEAD + """
        boxes = boxes.float()
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        """, "dtype"),
    "area computed in place": ("box-area", AREA_HEAD + """
        boxes[:, 2:] -= boxes[:, :2]
        return boxes[:, 2] * boxes[:, 3]
        """, "must not modify its inputs"),
    "small integer boxes not widened": ("box-area", AREA_HEAD + """
        if boxes.dtype == torch.float16:
            boxes = boxes.float()
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        """, "box_area of int16 boxes"),
    "area from torchvision": ("box-area", AREA_HEAD + """
        import torchvision
        return torchvision.ops.box_area(boxes)
        """, "does not allow"),
    # box_iou
    "intersection not clamped": ("box-iou", IOU_HEAD + """
        lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
        rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
        inter = (rb - lt).prod(dim=2)
        return inter / (box_area(boxes1)[:, None] + box_area(boxes2)[None] - inter)
        """, "clamp the intersection"),
    "union without subtracting the intersection": ("box-iou", IOU_HEAD + """
        lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
        rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=2)
        return inter / (box_area(boxes1)[:, None] + box_area(boxes2)[None])
        """, "IoU = intersection / (area1 + area2 - intersection)"),
    "IoU of matching rows only": ("box-iou", IOU_HEAD + """
        lt = torch.max(boxes1[:, :2], boxes2[:, :2])
        rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        return inter / (box_area(boxes1) + box_area(boxes2) - inter)
        """, "the result is [N, M]"),
    "intersection of int16 boxes in int16": ("box-iou", IOU_HEAD + """
        lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
        rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        return inter / (box_area(boxes1)[:, None] + box_area(boxes2)[None] - inter)
        """, "widened to int32 before any arithmetic"),
    "IoU in a double Python loop": ("box-iou", IOU_HEAD + """
        out = torch.zeros(len(boxes1), len(boxes2), dtype=torch.float32 if not boxes1.is_floating_point() else boxes1.dtype, device=boxes1.device)
        for i in range(len(boxes1)):
            for j in range(len(boxes2)):
                a, b = boxes1[i], boxes2[j]
                w = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])).clamp(min=0)
                h = (torch.min(a[3], b[3]) - torch.max(a[1], b[1])).clamp(min=0)
                inter = w * h
                out[i, j] = inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
        return out
        """, "too slow"),
    # sliding_windows: the task's loops with one slip each
    "aspect ratio read as width over height": ("sliding-windows", windows_variant(
        "w, h = math.floor(s / math.sqrt(r) + 0.5), math.floor(s * math.sqrt(r) + 0.5)",
        "w, h = math.floor(s * math.sqrt(r) + 0.5), math.floor(s / math.sqrt(r) + 0.5)"), "r = 2 is a tall window"),
    "last position left out": ("sliding-windows", windows_variant(
        "range(0, height - h + 1, stride):\n                for x in range(0, width - w + 1, stride)",
        "range(0, height - h, stride):\n                for x in range(0, width - w, stride)"), "x + w <= W, not x + w < W"),
    "columns before rows": ("sliding-windows", windows_variant(
        "for y in range(0, height - h + 1, stride):\n                for x in range(0, width - w + 1, stride)",
        "for x in range(0, width - w + 1, stride):\n                for y in range(0, height - h + 1, stride)"), "row by row"),
    "sizes truncated instead of rounded": ("sliding-windows", windows_variant(
        "w, h = math.floor(s / math.sqrt(r) + 0.5), math.floor(s * math.sqrt(r) + 0.5)",
        "w, h = int(s / math.sqrt(r)), int(s * math.sqrt(r))"), "floor(s / sqrt(r) + 0.5)"),
    # proposal_recall (each uses the reference's box_iou, which the notebook keeps)
    "threshold exclusive": ("proposal-recall", """
        def proposal_recall(proposals, gt_boxes, iou_threshold=0.5):
            if len(gt_boxes) == 0:
                return float("nan")
            if len(proposals) == 0:
                return 0.0
            return (box_iou(gt_boxes, proposals).max(dim=1).values > iou_threshold).float().mean().item()
        """, "use >=, not >"),
    "fraction of proposals that match": ("proposal-recall", """
        def proposal_recall(proposals, gt_boxes, iou_threshold=0.5):
            if len(gt_boxes) == 0:
                return float("nan")
            if len(proposals) == 0:
                return 0.0
            return (box_iou(proposals, gt_boxes).max(dim=1).values >= iou_threshold).float().mean().item()
        """, "found ground truths / all ground truths"),
    "a tensor instead of a float": ("proposal-recall", """
        def proposal_recall(proposals, gt_boxes, iou_threshold=0.5):
            if len(gt_boxes) == 0:
                return float("nan")
            if len(proposals) == 0:
                return 0.0
            return (box_iou(gt_boxes, proposals).max(dim=1).values >= iou_threshold).double().mean()
        """, "Python float"),
    "no proposals crash": ("proposal-recall", """
        def proposal_recall(proposals, gt_boxes, iou_threshold=0.5):
            if len(gt_boxes) == 0:
                return float("nan")
            return (box_iou(gt_boxes, proposals).max(dim=1).values >= iou_threshold).double().mean().item()
        """, "with no proposals the recall is 0.0"),
}


def selective_search_variant(old: str, new: str) -> str:
    """The reference's selective_search with one passage changed (a typical slip)."""
    source = REF.solution_source("selective-search")
    assert old in source, old
    return source.replace(old, new)


SELECTIVE_WRONG = {
    "histograms averaged without sizes": (
        "colour.append((size[i] * colour[i] + size[j] * colour[j]) / size[new])",
        "colour.append((colour[i] + colour[j]) / 2)", "size-weighted averages"),
    "box ends on the last column": ("extreme(cols, \"amax\") + 1, extreme(rows, \"amax\") + 1",
                                    "extreme(cols, \"amax\"), extreme(rows, \"amax\")", "last column + 1"),
    "ties go to the largest pair": ("i, j = min(pair for pair, score in scores.items() if score >= best - 1e-9)",
                                    "i, j = max(pair for pair, score in scores.items() if score >= best - 1e-9)",
                                    "smallest i, then the smallest j"),
    "only left-right neighbours": (
        "torch.stack([labels[:-1, :].reshape(-1), labels[1:, :].reshape(-1)], 1)]",
        "torch.stack([labels[:, :-1].reshape(-1), labels[:, 1:].reshape(-1)], 1)]", "only neighbours"),
}

MISTAKES = {**{name: (grade_id, code, phrase, tuple(DEPENDENTS.get(grade_id, ())))
               for name, (grade_id, code, phrase) in WRONG.items()},
            **{name: ("selective-search", selective_search_variant(old, new), phrase, ())
               for name, (old, new, phrase) in SELECTIVE_WRONG.items()}}
SLOW = ["IoU in a double Python loop"]

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW)


DIFFERENT_BUT_RIGHT = {
    "box-area": """
        def box_area(boxes):
            if boxes.dtype in (torch.float16, torch.bfloat16):
                boxes = boxes.to(torch.float32)
            elif boxes.dtype in (torch.int8, torch.uint8, torch.int16):
                boxes = boxes.to(torch.int32)
            x1, y1, x2, y2 = boxes.unbind(dim=1)
            return (x2 - x1).mul(y2 - y1)
        """,
    "box-iou": """
        def box_iou(boxes1, boxes2):
            n, m = len(boxes1), len(boxes2)
            a = boxes1[:, None, :].expand(n, m, 4)
            b = boxes2[None, :, :].expand(n, m, 4)
            w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
            h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
            if not w.is_floating_point():
                w, h = w.float(), h.float()
            inter = w * h
            union = box_area(boxes1).unsqueeze(1) + box_area(boxes2).unsqueeze(0) - inter
            return inter / union
        """,
    "sliding-windows": """
        def sliding_windows(image_size, window_sizes, aspect_ratios, stride):
            H, W = image_size
            rows = []
            for s in window_sizes:
                for r in aspect_ratios:
                    w = int(math.floor(s / r ** 0.5 + 0.5))
                    h = int(math.floor(s * r ** 0.5 + 0.5))
                    rows += [(x, y, x + w, y + h) for y in range(0, H - h + 1, stride) for x in range(0, W - w + 1, stride)]
            return torch.tensor(rows, dtype=torch.float32) if rows else torch.empty(0, 4)
        """,
    "selective-search": """
        import numpy as np
        def selective_search(image, segments, similarities=("colour", "texture", "size", "fill")):
            if not similarities or any(s not in ("colour", "texture", "size", "fill") for s in similarities):
                raise ValueError("bad similarities")
            lab = segments.cpu().numpy()
            H, W = lab.shape
            R = lab.max() + 1
            cb = colour_bins(image).cpu().numpy()
            ob, st = (t.cpu().numpy() for t in gradient_orientations(image))
            regions = []
            for r in range(R):
                m = lab == r
                ys, xs = np.nonzero(m)
                col = np.concatenate([np.bincount(cb[c][m], minlength=25) for c in range(3)]).astype(float)
                tex = np.concatenate([np.bincount(ob[c][m], weights=st[c][m], minlength=8) for c in range(3)])
                regions.append(dict(n=float(m.sum()), box=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                    col=col / col.sum(), tex=tex / tex.sum() if tex.sum() > 0 else tex))
            adj = set()
            for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:])):
                d = a != b
                adj |= {(min(p, q), max(p, q)) for p, q in zip(a[d].tolist(), b[d].tolist())}
            def sim(i, j):
                A, B = regions[i], regions[j]
                bx = [min(A["box"][0], B["box"][0]), min(A["box"][1], B["box"][1]),
                      max(A["box"][2], B["box"][2]), max(A["box"][3], B["box"][3])]
                v = 0.0
                if "colour" in similarities: v += np.minimum(A["col"], B["col"]).sum()
                if "texture" in similarities: v += np.minimum(A["tex"], B["tex"]).sum()
                if "size" in similarities: v += 1 - (A["n"] + B["n"]) / (H * W)
                if "fill" in similarities: v += 1 - ((bx[2] - bx[0]) * (bx[3] - bx[1]) - A["n"] - B["n"]) / (H * W)
                return v
            S = {p: sim(*p) for p in adj}
            while S:
                top = max(S.values())
                i, j = sorted(p for p in S if S[p] >= top - 1e-9)[0]
                A, B = regions[i], regions[j]
                n = A["n"] + B["n"]
                regions.append(dict(n=n, box=[min(A["box"][0], B["box"][0]), min(A["box"][1], B["box"][1]),
                                              max(A["box"][2], B["box"][2]), max(A["box"][3], B["box"][3])],
                                    col=(A["n"] * A["col"] + B["n"] * B["col"]) / n,
                                    tex=(A["n"] * A["tex"] + B["n"] * B["tex"]) / n))
                t = len(regions) - 1
                nbrs = {k for p in S if i in p or j in p for k in p} - {i, j}
                S = {p: v for p, v in S.items() if i not in p and j not in p}
                S.update({(k, t): sim(k, t) for k in nbrs})
            return torch.tensor(np.array([r["box"] for r in regions], dtype=np.float32), device=image.device)
        """,
    "proposal-recall": """
        def proposal_recall(proposals, gt_boxes, iou_threshold=0.5):
            if gt_boxes.shape[0] == 0:
                return math.nan
            found = torch.zeros(len(gt_boxes), dtype=torch.bool, device=gt_boxes.device)
            if len(proposals):
                found = (box_iou(proposals, gt_boxes) >= iou_threshold).any(dim=0)
            return float(found.sum()) / len(gt_boxes)
        """,
}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)


def test_the_wrong_grouping_variants_really_change_the_reference():
    for old, new, _ in SELECTIVE_WRONG.values():
        assert selective_search_variant(old, new) != REF.solution_source("selective-search")


def test_reference_module_is_the_solution_notebook():
    assert REF.path == ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
