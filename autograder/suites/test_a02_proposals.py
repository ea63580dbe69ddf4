"""Hidden suite for a02-proposals: boxes, sliding windows, selective search's grouping, recall."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.support import (GRADING, box_sets, expect_close, expect_fast, expect_tensor_like,
                                       expect_unchanged, generator, noncontiguous, random_boxes)

FUNCTIONS = {"box_area": "box-area", "box_iou": "box-iou", "sliding_windows": "sliding-windows",
             "selective_search": "selective-search", "proposal_recall": "proposal-recall"}
BANNED = {
    "box_area": ["torchvision.ops"],
    "box_iou": ["torchvision.ops"],
    "sliding_windows": ["torchvision"],
    "selective_search": ["skimage.graph", "odcourse.proposals.selective_search",
                         "odcourse.proposals.selective_search_hierarchy"],
    "proposal_recall": ["torchvision.ops"],
}
# The helpers the notebook imports for selective_search (everything else of odcourse is banned).
HELPERS_ALLOWED = ["odcourse.proposals.colour_bins", "odcourse.proposals.gradient_orientations",
                   "odcourse.proposals.oversegment"]


# box_area -------------------------------------------------------------------------------------

@pytest.mark.function("box_area")
@pytest.mark.points(1)
@GRADING
@given(box_sets())
def test_box_area_of_random_boxes(student, reference, device, params):
    seed, n, _, scale, dtype, degenerate = params
    boxes = random_boxes(generator(seed), n, scale, dtype, degenerate, device)
    expect_close(student.box_area(boxes), reference.box_area(boxes), f"box_area of {n} {dtype} boxes",
                 "the area of (x1, y1, x2, y2) is (x2 - x1) * (y2 - y1)", atol=1e-9, rtol=1e-6)


@pytest.mark.function("box_area")
@pytest.mark.points(1)
def test_box_area_empty_integer_and_strided_boxes(student, reference, device):
    boxes = random_boxes(generator(1), 7, 50.0, torch.float64, 0.3, device)
    expect_close(student.box_area(noncontiguous(boxes)), reference.box_area(boxes),
                 "box_area of boxes that are not contiguous in memory", "index columns, do not reshape the storage")
    expect_unchanged(student, "box_area")
    empty = torch.zeros(0, 4, device=device)
    expect_tensor_like(student.box_area(empty), reference.box_area(empty), "box_area of no boxes")
    integers = boxes.round().long()
    expect_close(student.box_area(integers), reference.box_area(integers), "box_area of int64 boxes",
                 "integer boxes give integer areas")
    small = torch.tensor([[0, 0, 200, 200], [10, 20, 110, 70], [5, 5, 5, 9]], dtype=torch.int16, device=device)
    expect_close(student.box_area(small), reference.box_area(small), "box_area of int16 boxes",
                 "int8, uint8 and int16 boxes are widened to int32 first: a 200 x 200 box has an area of 40000, "
                 "which int16 cannot hold")


# box_iou --------------------------------------------------------------------------------------

@pytest.mark.function("box_iou")
@pytest.mark.points(1)
@GRADING
@given(box_sets())
def test_box_iou_of_random_boxes(student, reference, device, params):
    seed, n, m, scale, dtype, degenerate = params
    g = generator(seed)
    boxes1 = random_boxes(g, n, scale, dtype, degenerate, device)
    boxes2 = random_boxes(g, m, scale, dtype, degenerate, device)
    expect_close(student.box_iou(boxes1, boxes2), reference.box_iou(boxes1, boxes2),
                 f"box_iou of [{n}, 4] and [{m}, 4] {dtype} boxes",
                 "IoU = intersection / (area1 + area2 - intersection), for every pair [i, j]", atol=1e-6)


@pytest.mark.function("box_iou")
@pytest.mark.points(1)
def test_box_iou_of_disjoint_and_touching_boxes(student, reference, device):
    g = generator(2)
    boxes1 = random_boxes(g, 30, 10.0, torch.float64, 0.0, device)
    shifted = boxes1.clone()
    width = boxes1[:, 2] - boxes1[:, 0]
    shifted[:, [0, 2]] += width[:, None] + torch.rand(30, 1, generator=g, dtype=torch.float64).to(device) * 5
    apart = student.box_iou(boxes1, shifted)
    expect_close(apart, reference.box_iou(boxes1, shifted), "box_iou of boxes side by side",
                 "boxes that do not overlap (or only touch) have IoU 0: clamp the intersection's width and "
                 "height at 0 before multiplying them")


@pytest.mark.function("box_iou")
@pytest.mark.points(1)
def test_box_iou_shapes_dtypes_and_empty_sets(student, reference, device):
    g = generator(3)
    boxes1 = random_boxes(g, 5, 20.0, torch.float64, 0.0, device)
    boxes2 = random_boxes(g, 9, 20.0, torch.float64, 0.0, device)
    got = student.call("box_iou", noncontiguous(boxes1), boxes2,
                       failure="box_iou failed on 5 boxes against 9 ({error}): the result is [N, M], comparing "
                               "every box of boxes1 with every box of boxes2")
    expect_close(got, reference.box_iou(boxes1, boxes2),
                 "box_iou of float64 boxes [5, 4] (not contiguous) against [9, 4]",
                 "the result is [N, M]: row i compares boxes1[i] with every box of boxes2")
    expect_unchanged(student, "box_iou")
    for n, m in ((0, 9), (5, 0), (0, 0)):
        a, b = boxes1[:n], boxes2[:m]
        expect_tensor_like(student.box_iou(a, b), reference.box_iou(a, b), f"box_iou of {n} and {m} boxes")
    integers1, integers2 = (boxes1 * 3).long(), (boxes2 * 3).long()
    expect_close(student.box_iou(integers1, integers2), reference.box_iou(integers1, integers2),
                 "box_iou of int64 boxes", "integer boxes give a float32 IoU (divide, do not floor-divide)")
    small1 = torch.tensor([[0, 0, 200, 200], [0, 0, 180, 190]], dtype=torch.int16, device=device)
    small2 = torch.tensor([[50, 50, 250, 250], [0, 0, 200, 200]], dtype=torch.int16, device=device)
    expect_close(student.box_iou(small1, small2), reference.box_iou(small1, small2), "box_iou of int16 boxes",
                 "int8, uint8 and int16 boxes are widened to int32 before any arithmetic: their areas and "
                 "intersections overflow int16")


@pytest.mark.function("box_iou")
@pytest.mark.points(1)
def test_box_iou_speed_on_many_boxes(student, reference, device):
    expect_fast(student, reference, "box_iou", lambda g: (random_boxes(g, 400, 500.0, torch.float32, 0.0, device),
                                                          random_boxes(g, 400, 500.0, torch.float32, 0.0, device)),
                factor=10, seed=4)


# sliding_windows ------------------------------------------------------------------------------

@st.composite
def window_configs(draw):
    height, width = draw(st.integers(1, 160)), draw(st.integers(1, 160))
    sizes = draw(st.lists(st.integers(1, 120), min_size=1, max_size=3))
    ratios = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 1 / 3, 3.0, 0.7, 1.6]), min_size=1, max_size=3))
    return (height, width), sizes, ratios, draw(st.integers(1, 24))


@pytest.mark.function("sliding_windows")
@pytest.mark.points(1)
@GRADING
@given(window_configs())
def test_sliding_windows_match_the_rules(student, reference, config):
    image_size, sizes, ratios, stride = config
    expect_close(student.sliding_windows(image_size, sizes, ratios, stride),
                 reference.sliding_windows(image_size, sizes, ratios, stride),
                 "the windows of an image", "follow the task's rules for sizes, ratios, positions and order",
                 atol=0, rtol=0)


@pytest.mark.function("sliding_windows")
@pytest.mark.points(1)
def test_sliding_windows_reach_the_last_position(student, reference):
    # (64 - 16) and (40 - 16) are multiples of the stride: the last windows end on the image's edge.
    got = student.sliding_windows((40, 64), [16], [1.0], 8)
    expect(isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[-1] == 4 and len(got) > 0,
           "sliding_windows must return float32[K, 4]")
    expect(bool((got[:, 2] <= 64).all() and (got[:, 3] <= 40).all()), "every window must lie inside the image")
    expect(float(got[:, 2].max()) == 64 and float(got[:, 3].max()) == 40,
           "a window may end exactly at the image's right or bottom edge: x + w <= W, not x + w < W")
    expect_close(got, reference.sliding_windows((40, 64), [16], [1.0], 8), "16x16 windows at stride 8 in a "
                 "40x64 image", "corners at x = 0, stride, 2 stride, ... while the window fits", atol=0, rtol=0)


def same_windows(got, want) -> bool:
    return isinstance(got, torch.Tensor) and got.shape == want.shape and torch.equal(got.float(), want)


@pytest.mark.function("sliding_windows")
@pytest.mark.points(1)
def test_sliding_windows_aspect_ratio_is_height_over_width(student, reference):
    got = student.sliding_windows((100, 100), [32], [2.0, 0.5], 50)
    want = reference.sliding_windows((100, 100), [32], [2.0, 0.5], 50)
    expect(same_windows(got, want), "ratio r is height / width: w = floor(s / sqrt(r) + 0.5) and "
                                    "h = floor(s * sqrt(r) + 0.5), so r = 2 is a tall window")


@pytest.mark.function("sliding_windows")
@pytest.mark.points(1)
def test_sliding_windows_order_sizes_ratios_rows_columns(student, reference):
    args = ((30, 50), [10, 20], [1.0, 2.0], 10)
    got, want = student.sliding_windows(*args), reference.sliding_windows(*args)
    expect(same_windows(got, want), "windows are ordered by size, then ratio (in the given orders), then "
                                    "row by row: y first, then x")
    none = student.sliding_windows((10, 10), [20], [1.0], 4)
    expect(isinstance(none, torch.Tensor) and none.shape == (0, 4),
           "a window larger than the image has no position: the result is float32[0, 4]")


# selective_search -----------------------------------------------------------------------------

def textured_image(seed: int, height: int, width: int) -> torch.Tensor:
    """A smooth random colour image with some noise, float32[3, H, W] in [0, 1]."""
    g = generator(seed)
    coarse = torch.rand(1, 3, max(2, height // 12), max(2, width // 12), generator=g)
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    return (image + 0.05 * torch.randn(3, height, width, generator=g)).clamp(0, 1)


def scene(seed: int, scale: float):
    from odcourse.data import make_scene
    from odcourse.proposals import oversegment

    image = textured_image(seed, 64, 80) if seed % 2 else make_scene(seed, 0, size=96)[0]
    return image, oversegment(image, scale=scale, min_size=10)


def compare_grouping(student, reference, device, similarities, seeds, hint):
    for seed in seeds:
        image, segments = scene(seed, 60.0)
        image, segments = image.to(device), segments.to(device)
        want = reference.selective_search(image, segments, similarities)
        got = student.selective_search(image, segments, similarities)
        expect_close(got, want, f"the boxes of selective search with {similarities}", hint, atol=0, rtol=0)


@pytest.mark.function("selective_search")
@pytest.mark.points(1)
def test_selective_search_initial_regions(student, reference, device):
    for seed in (1, 2):
        image, segments = scene(seed, 60.0)
        count = int(segments.max()) + 1
        want = reference.selective_search(image.to(device), segments.to(device), ("size",))
        got = student.selective_search(image.to(device), segments.to(device), ("size",))
        expect_unchanged(student, "selective_search")
        expect(isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[0] >= count,
               "selective_search must return float32[R + merges, 4] with the R initial regions first")
        expect_close(got[:count], want[:count], "the boxes of the initial regions",
                     "region r's box is the tight box of the pixels labelled r: x1 = first column, "
                     "x2 = last column + 1 (rows likewise)", atol=0, rtol=0)
    try:
        student.selective_search(image.to(device), segments.to(device), ())
        raised = False
    except AssertionError as failure:
        raised = "ValueError" in str(failure)
    expect(raised, "similarities=() must raise a ValueError")


@pytest.mark.function("selective_search")
@pytest.mark.points(1)
def test_selective_search_size_similarity_and_ties(student, reference, device):
    compare_grouping(student, reference, device, ("size",), (3, 4),
                     "with size only, small regions merge first; equal similarities (within 1e-9) go to the "
                     "pair with the smallest i, then the smallest j; merged regions take the next number")


@pytest.mark.function("selective_search")
@pytest.mark.points(1)
def test_selective_search_fill_similarity(student, reference, device):
    compare_grouping(student, reference, device, ("fill",), (5, 6),
                     "fill = 1 - (size of the box around both regions - size(i) - size(j)) / size(image), "
                     "with the merged region's box the box around both")


@pytest.mark.function("selective_search")
@pytest.mark.points(1)
def test_selective_search_colour_similarity(student, reference, device):
    compare_grouping(student, reference, device, ("colour",), (7, 8),
                     "colour histograms have 75 bins (channel * 25 + bin), sum to 1, and merge as "
                     "size-weighted averages; similarity is the sum of the bin-wise minima")


@pytest.mark.function("selective_search")
@pytest.mark.points(1)
def test_selective_search_texture_similarity(student, reference, device):
    compare_grouping(student, reference, device, ("texture",), (9, 10),
                     "texture histograms add up the gradient strength per (channel * 8 + orientation bin), "
                     "are divided by their sum, and merge as size-weighted averages")


@pytest.mark.function("selective_search")
@pytest.mark.points(1)
def test_selective_search_all_similarities_and_neighbours(student, reference, device):
    compare_grouping(student, reference, device, ("colour", "texture", "size", "fill"), (11, 12, 14),
                     "only neighbours (pixels left, right, above or below each other) are merged, and the "
                     "merged region's neighbours are those of both parts")


# proposal_recall ------------------------------------------------------------------------------

def jittered(g, boxes, amount):
    """Copies of boxes moved and resized by up to `amount` of their size."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + (torch.rand(boxes.shape, generator=g, dtype=boxes.dtype) - 0.5) * 2 * amount * size


@pytest.mark.function("proposal_recall")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 12), st.integers(0, 60),
       st.sampled_from([0.3, 0.5, 0.7]))
def test_proposal_recall_of_random_proposals(student, reference, device, seed, gts, proposals, threshold):
    g = generator(seed)
    gt_boxes = random_boxes(g, gts, 100.0, torch.float32)
    near = jittered(g, gt_boxes[torch.randint(0, gts, (proposals,), generator=g)], 0.4)
    near = torch.cat([torch.minimum(near[:, :2], near[:, 2:]), torch.maximum(near[:, :2], near[:, 2:])], 1)
    want = reference.proposal_recall(near.to(device), gt_boxes.to(device), threshold)
    got = student.proposal_recall(near.to(device), gt_boxes.to(device), threshold)
    expect(isinstance(got, float), f"proposal_recall must return a Python float, not {type(got).__name__}")
    expect(abs(got - want) < 1e-9, "the recall is the fraction of ground-truth boxes whose best IoU with a "
                                   "proposal reaches the threshold")


@pytest.mark.function("proposal_recall")
@pytest.mark.points(1)
def test_proposal_recall_threshold_is_inclusive(student, device):
    g = generator(5)
    gt_boxes = random_boxes(g, 10, 100.0, torch.float64).round() + torch.tensor([0.0, 0.0, 1.0, 1.0],
                                                                                 dtype=torch.float64)
    double_height = gt_boxes.clone()
    double_height[:, 3] += gt_boxes[:, 3] - gt_boxes[:, 1]  # IoU exactly 0.5 with its ground truth
    got = student.proposal_recall(double_height.to(device), gt_boxes.to(device), 0.5)
    expect(got == 1.0, "a proposal with IoU exactly equal to the threshold finds its object: use >=, not >")


@pytest.mark.function("proposal_recall")
@pytest.mark.points(1)
def test_proposal_recall_counts_ground_truths_not_proposals(student, reference, device):
    g = generator(6)
    gt_boxes = random_boxes(g, 6, 100.0, torch.float64)
    proposals = torch.cat([gt_boxes[:2]] * 10 + [random_boxes(g, 5, 1000.0, torch.float64) + 2000])
    want = reference.proposal_recall(proposals.to(device), gt_boxes.to(device), 0.5)
    got = student.proposal_recall(proposals.to(device), gt_boxes.to(device), 0.5)
    expect(isinstance(got, float) and abs(got - want) < 1e-9,
           "recall is found ground truths / all ground truths: many proposals on one object still find "
           "one object, and proposals that match nothing do not lower the recall")
    expect_unchanged(student, "proposal_recall")


@pytest.mark.function("proposal_recall")
@pytest.mark.points(1)
def test_proposal_recall_without_proposals_or_ground_truth(student, device):
    gt_boxes = random_boxes(generator(7), 4, 50.0, torch.float32, device=device)
    nothing = student.call("proposal_recall", torch.zeros(0, 4, device=device), gt_boxes, 0.5,
                           failure="with no proposals the recall is 0.0, but proposal_recall failed (a max over "
                                   "no proposals?)")
    expect(nothing == 0.0 and isinstance(nothing, float), "with no proposals the recall is 0.0")
    undefined = student.call("proposal_recall", gt_boxes, torch.zeros(0, 4, device=device), 0.5,
                             failure="with no ground truth the recall is undefined (float('nan')), but "
                                     "proposal_recall failed")
    expect(isinstance(undefined, float) and math.isnan(undefined),
           "with no ground truth the recall is undefined: return float('nan')")
