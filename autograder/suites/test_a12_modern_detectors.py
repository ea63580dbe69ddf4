"""Hidden suite for a12-modern-detectors: RetinaNet's focal loss, the generalised IoU, FCOS's matching,
regression targets and centre-ness, the Hungarian assignment and DETR's set loss."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.support import (raised, GRADING, box_sets, expect_close, expect_fast, expect_tensor_like,
                                       expect_unchanged, generator, noncontiguous, random_boxes)

FUNCTIONS = {"sigmoid_focal_loss": "sigmoid-focal-loss", "generalized_box_iou": "generalized-box-iou",
             "fcos_match": "fcos-match", "fcos_targets": "fcos-targets", "centerness": "centerness",
             "hungarian_match": "hungarian-match", "detr_loss": "detr-loss"}
# torchvision's versions of the exercises (banning torchvision.ops bans everything it defines and
# torchvision's operators; the names below are the ones a student would reach for, named so that
# the feedback says which), and the FCOS internals of torchvision.models.detection.
TORCHVISION_OPS = ["torchvision.ops", "torchvision.ops.sigmoid_focal_loss", "torchvision.ops.generalized_box_iou",
                   "torchvision.ops.generalized_box_iou_loss", "torchvision.ops.box_iou",
                   "torchvision.ops.distance_box_iou", "torchvision.ops.complete_box_iou"]
FCOS_INTERNALS = ["torchvision.models.detection", "torchvision.models.detection.fcos.FCOS.compute_loss",
                  "torchvision.models.detection.fcos.FCOSHead.compute_loss",
                  "torchvision.models.detection._utils.BoxLinearCoder.encode",
                  "torchvision.models.detection._utils.BoxLinearCoder.decode"]
TORCHVISION = TORCHVISION_OPS + FCOS_INTERNALS
ASSIGNMENT_SOLVERS = ["scipy", "scipy.optimize", "scipy.optimize.linear_sum_assignment", "scipy.sparse.csgraph",
                      "scipy.sparse.csgraph.min_weight_full_bipartite_matching", "networkx"]
BANNED = {"sigmoid_focal_loss": TORCHVISION, "generalized_box_iou": TORCHVISION, "fcos_match": TORCHVISION,
          "fcos_targets": TORCHVISION, "centerness": TORCHVISION,
          "hungarian_match": ASSIGNMENT_SOLVERS + ["torch.linalg"],
          "detr_loss": TORCHVISION + ASSIGNMENT_SOLVERS}


# sigmoid_focal_loss -----------------------------------------------------------------------------

FOCAL_HINT = ("FL = -alpha_t (1 - p_t)^gamma log(p_t), with p = sigmoid(x), p_t = p for a target 1 and 1 - p for a "
              "target 0, alpha_t = alpha for a target 1 and 1 - alpha for a target 0 (1 when alpha < 0); reduction "
              "'none' keeps the shape, 'mean' and 'sum' give one number")


@pytest.mark.function("sigmoid_focal_loss")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.sampled_from([(7,), (5, 9), (2, 30, 4)]), st.sampled_from([1.0, 4.0]),
       st.sampled_from([0.25, 0.5, 0.9]), st.sampled_from([0.0, 1.0, 2.0, 5.0]),
       st.sampled_from(["none", "mean", "sum"]), st.sampled_from([torch.float32, torch.float64]))
def test_focal_loss_of_random_logits(student, reference, device, seed, shape, scale, alpha, gamma, reduction, dtype):
    g = generator(seed)
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(device)
    targets = (torch.rand(shape, generator=g) < 0.3).to(dtype).to(device)
    got = student.call("sigmoid_focal_loss", logits, targets, alpha, gamma, reduction,
                       failure=f"sigmoid_focal_loss failed with reduction '{reduction}' ({{error}}): {FOCAL_HINT}")
    expect_close(got, reference.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction),
                 f"the focal loss of {logits.numel()} logits with alpha {alpha}, gamma {gamma:g}, reduction "
                 f"'{reduction}'", FOCAL_HINT, atol=1e-6, rtol=1e-5)
    expect_unchanged(student, "sigmoid_focal_loss")


@pytest.mark.function("sigmoid_focal_loss")
@pytest.mark.points(1)
def test_focal_loss_large_logits_no_weighting_and_edge_cases(student, reference, device):
    far = torch.tensor([40.0, -40.0, 40.0, -40.0, 25.0, -25.0], device=device)
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 1.0], device=device)
    expect_close(student.call("sigmoid_focal_loss", far, labels, 0.25, 2.0, "none",
                              failure="sigmoid_focal_loss failed on logits of +-40 ({error})"),
                 reference.sigmoid_focal_loss(far, labels, 0.25, 2.0, "none"),
                 "the focal loss of float32 logits of +-25 and +-40",
                 "compute -log(p_t) in a numerically stable way: 1 - sigmoid(40) is 0 in float32 and log(0) is -inf; "
                 "F.binary_cross_entropy_with_logits is stable", atol=1e-4, rtol=1e-5)
    g = generator(31)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64).to(device) * 3
    targets = (torch.rand(6, 5, generator=g) < 0.4).double().to(device)
    for alpha, gamma in ((-1.0, 2.0), (-1.0, 0.0)):
        expect_close(student.sigmoid_focal_loss(logits, targets, alpha, gamma, "none"),
                     reference.sigmoid_focal_loss(logits, targets, alpha, gamma, "none"),
                     f"the focal loss with alpha = -1 and gamma {gamma:g}",
                     "a negative alpha switches the weighting off (alpha_t = 1 for every element); with gamma 0 as "
                     "well it is plain binary cross-entropy", atol=1e-9)
    expect_close(student.sigmoid_focal_loss(noncontiguous(logits), targets, 0.25, 2.0, "none"),
                 reference.sigmoid_focal_loss(logits, targets, 0.25, 2.0, "none"),
                 "the focal loss of logits stored non-contiguously", FOCAL_HINT, atol=1e-9)
    expect_unchanged(student, "sigmoid_focal_loss")
    empty = torch.zeros(0, 3, device=device)
    expect_close(student.call("sigmoid_focal_loss", empty, empty, 0.25, 2.0, "none",
                              failure="sigmoid_focal_loss failed on an empty input ({error})"),
                 reference.sigmoid_focal_loss(empty, empty, 0.25, 2.0, "none"), "the focal loss of no logits",
                 "an empty input gives an empty loss of the same shape", atol=0)
    message = raised(lambda: student.sigmoid_focal_loss(logits, targets, 0.25, 2.0, "average"))
    expect("ValueError" in message, "reduction 'average' must raise a ValueError (only 'none', 'mean' and 'sum' "
                                    "exist)" + (", not another error" if message else ", not return a result"))


@pytest.mark.function("sigmoid_focal_loss")
@pytest.mark.points(1)
def test_focal_loss_gradient(student, reference, device):
    g = generator(32)
    logits = (torch.randn(40, 3, generator=g, dtype=torch.float64) * 3).to(device)
    targets = (torch.rand(40, 3, generator=g) < 0.3).double().to(device)
    for alpha, gamma in ((0.25, 2.0), (0.5, 1.0), (-1.0, 3.0)):
        probe = {"kind": "backward", "wrt": [0]}
        got = student.call("sigmoid_focal_loss", logits, targets, alpha, gamma, "sum", probe=probe,
                           failure="the gradient of sigmoid_focal_loss could not be computed ({error}): build the "
                                   "loss from differentiable tensor operations")
        want = reference.call("sigmoid_focal_loss", logits, targets, alpha, gamma, "sum", probe=probe)
        expect_close(got[1][0], want[1][0], f"the gradient of the summed focal loss (alpha {alpha}, gamma {gamma:g}) "
                     "with respect to the logits", "differentiate the loss itself (autograd through "
                     "(1 - p_t)^gamma and log(p_t)); " + FOCAL_HINT, atol=1e-9)


# generalized_box_iou ----------------------------------------------------------------------------

GIOU_HINT = ("GIoU(A, B) = IoU(A, B) - (|C| - |A u B|) / |C|, with |A u B| = |A| + |B| - |A n B| and C the "
             "smallest box enclosing A and B; entry (i, j) pairs boxes1[i] with boxes2[j]")


@pytest.mark.function("generalized_box_iou")
@pytest.mark.points(1)
@GRADING
@given(box_sets(max_boxes=30))
def test_generalized_box_iou_of_random_boxes(student, reference, device, sets):
    seed, n, m, scale, dtype, degenerate = sets
    g = generator(seed)
    first = random_boxes(g, n, scale, dtype, degenerate, device)  # flat boxes only here: every union is > 0
    second = random_boxes(g, m, scale, dtype, 0.0, device)
    got = student.call("generalized_box_iou", first, second,
                       failure=f"generalized_box_iou failed on {n} x {m} boxes ({{error}}): {GIOU_HINT}")
    expect_close(got, reference.generalized_box_iou(first, second),
                 f"the GIoU of {n} boxes with {m} boxes", GIOU_HINT, atol=1e-5)
    expect_unchanged(student, "generalized_box_iou")


@pytest.mark.function("generalized_box_iou")
@pytest.mark.points(1)
def test_generalized_box_iou_of_special_pairs(student, reference, device):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0],
                          [2.0, 2.0, 4.0, 4.0], [1000.0, 1000.0, 1001.0, 1001.0], [10.0, 0.0, 20.0, 10.0]],
                         device=device)
    want = reference.generalized_box_iou(boxes, boxes)
    got = student.call("generalized_box_iou", boxes, boxes, failure=f"generalized_box_iou failed ({{error}})")
    expect_tensor_like(got, want, "the GIoU of 6 boxes with themselves", hint="the result is [N, M]")
    far = torch.tensor([[0, 4], [2, 4], [0, 2]], device=device)
    expect(bool(torch.isclose(got[far[:, 0], far[:, 1]].cpu().double(), want[far[:, 0], far[:, 1]].cpu().double(),
                              atol=1e-6).all()),
           "boxes far apart must have a GIoU near -1 (and different distances different GIoUs): IoU 0 minus the "
           "uncovered share of the enclosing box, (|C| - |A u B|) / |C|")
    expect(bool(torch.isclose(got[3, 0].cpu().double(), want[3, 0].cpu().double(), atol=1e-6)),
           "a box inside another has GIoU = IoU: the enclosing box is the larger box, which the union fills")
    expect_close(got, want, "the GIoU of identical, touching, nested and distant boxes", GIOU_HINT, atol=1e-6)
    for n, m in ((0, 3), (4, 0), (0, 0)):
        a, b = boxes[:n], boxes[:m]
        expect_close(student.call("generalized_box_iou", a, b, failure=f"generalized_box_iou failed on {n} x {m} "
                                                                        "boxes ({error})"),
                     reference.generalized_box_iou(a, b), f"the GIoU of {n} boxes with {m} boxes",
                     "no boxes on one side give an empty [N, M] tensor", atol=0)
    g = generator(33)
    a, b = random_boxes(g, 12, 50.0, device=device), random_boxes(g, 9, 50.0, device=device)
    expect_close(student.generalized_box_iou(noncontiguous(a), b), reference.generalized_box_iou(a, b),
                 "the GIoU of float64 boxes stored non-contiguously", GIOU_HINT, atol=1e-12)
    expect_unchanged(student, "generalized_box_iou")


@pytest.mark.function("generalized_box_iou")
@pytest.mark.points(1)
def test_generalized_box_iou_speed_and_gradient(student, reference, device):
    def large(gen):
        return random_boxes(gen, 1000, 500.0, torch.float32), random_boxes(gen, 1000, 500.0, torch.float32)

    # The speed first: a loop over pairs in Python floats is quick enough to be timed (about 30 times
    # the reference) but has no gradient, and the student should read what is wrong with it first.
    expect_fast(student, reference, "generalized_box_iou", large, factor=10, seed=35,
                hint="compute all N x M pairs at once by broadcasting boxes1[:, None] against boxes2[None], not in a "
                     "Python loop over boxes")
    g = generator(34)
    a, b = random_boxes(g, 15, 40.0, device=device), random_boxes(g, 11, 40.0, device=device)
    upstream = torch.randn(15, 11, generator=g, dtype=torch.float64).to(device)
    probe = {"kind": "backward", "wrt": [0, 1], "grad_output": upstream}
    got = student.call("generalized_box_iou", a, b, probe=probe,
                       failure="the gradient of generalized_box_iou could not be computed ({error}): DETR trains its "
                               "boxes through it, so use differentiable tensor operations")
    want = reference.call("generalized_box_iou", a, b, probe=probe)
    for k, which in enumerate(("boxes1", "boxes2")):
        expect_close(got[1][k], want[1][k], f"the gradient of the GIoU with respect to {which}",
                     "autograd through IoU - (|C| - |A u B|) / |C| (min, max and clamp(min=0) are differentiable); "
                     + GIOU_HINT, atol=1e-9)


# fcos_match -------------------------------------------------------------------------------------

def fcos_points(image_size, strides, units, dtype=torch.float32, device="cpu"):
    """torchvision's FCOS points: one square anchor of side units[k] per location of level k, centred on
    multiples of strides[k], row by row; (anchors float[N, 4], points per level)."""
    levels = []
    for stride, unit in zip(strides, units):
        steps = torch.arange(0, image_size, stride, dtype=torch.float64)
        grid = torch.cartesian_prod(steps, steps).flip(1)  # (x, y), y the slower
        levels.append(torch.cat([grid - unit / 2, grid + unit / 2], 1))
    return torch.cat(levels).to(dtype=dtype, device=device), [len(level) for level in levels]


def objects(g, count, image_size, dtype=torch.float32, device="cpu"):
    """Random boxes inside (or a little outside) an image, 4 to 90% of its side."""
    corner = torch.rand(count, 2, generator=g, dtype=torch.float64) * image_size * 0.9 - image_size * 0.05
    size = (0.04 + torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.86) * image_size
    return torch.cat([corner, corner + size], 1).to(dtype=dtype, device=device)


MATCH_HINT = ("an object is a candidate of a point when max(|x - cx|, |y - cy|) < radius x s (s the anchor's side), "
              "min(l, t, r, b) > 0 and 4s < max(l, t, r, b) < 8s (0 on the first level, infinity on the last); the "
              "candidate of smallest area wins (equal areas: the lowest index); no candidate: -1")

LAYOUTS = [((8, 16, 32), (8, 16, 32)), ((8, 16, 32), (4, 8, 16)), ((8, 16, 32, 64, 128), (8, 16, 32, 64, 128)),
           ((16,), (16,)), ((4, 8), (4, 8))]


@pytest.mark.function("fcos_match")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.sampled_from(range(len(LAYOUTS))), st.sampled_from([64, 128, 256]),
       st.integers(0, 10), st.sampled_from([1.5, 1.0, 2.5]), st.sampled_from([torch.float32, torch.float64]))
def test_fcos_match_of_random_scenes(student, reference, device, seed, layout, image_size, count, radius, dtype):
    strides, units = LAYOUTS[layout]
    anchors, counts = fcos_points(image_size, strides, units, dtype, device)
    gt = objects(generator(seed), count, image_size, dtype, device)
    got = student.call("fcos_match", anchors, gt, counts, radius,
                       failure=f"fcos_match failed for {len(anchors)} points and {count} objects ({{error}}): "
                               f"{MATCH_HINT}")
    expect_close(got, reference.fcos_match(anchors, gt, counts, radius),
                 f"the matches of {len(anchors)} points on {len(counts)} level(s) to {count} objects (radius {radius})",
                 MATCH_HINT, atol=0)
    expect_unchanged(student, "fcos_match")


def expect_matches(got, want, what: str, hint: str) -> None:
    expect_tensor_like(got, want, what)
    differ = int((got.cpu() != want.cpu()).sum())
    expect(differ == 0, f"{what}: {differ} of {len(want)} points are matched differently; {hint}")


@pytest.mark.function("fcos_match")
@pytest.mark.points(1)
def test_fcos_match_rules_one_at_a_time(student, reference, device):
    # One level of unit 8 on a 64 x 64 image (first and last level: its range is (0, infinity)).
    anchors, counts = fcos_points(64, (8,), (8,), torch.float64, device)
    def case(boxes, radius=1.5):
        gt = torch.tensor(boxes, dtype=torch.float64, device=device)
        return student.call("fcos_match", anchors, gt, counts, radius, failure="fcos_match failed ({error})"), \
            reference.fcos_match(anchors, gt, counts, radius)

    got, want = case([[0.0, 0.0, 64.0, 64.0]])
    expect_matches(got, want, "a 64 x 64 object with radius 1.5",
                   "only points within radius x s = 12 pixels of the object's centre (in x and in y, strictly) are "
                   "candidates: centre sampling (and a single level is the first and the last: its range is "
                   "(0, infinity))")
    got, want = case([[0.0, 0.0, 64.0, 64.0]], radius=3.0)
    expect_matches(got, want, "a 64 x 64 object with radius 3", "the centre region is radius x s each way from the "
                                                                "centre, s the side of the point's anchor")
    got, want = case([[16.0, 24.0, 48.0, 40.0]])
    expect_matches(got, want, "an object whose sides pass through points",
                   "a point on the border of a box is not inside it: min(l, t, r, b) > 0, strictly")
    got, want = case([[10.0, 10.0, 50.0, 50.0], [20.0, 20.0, 38.0, 38.0]])
    expect_matches(got, want, "a small object inside a large one",
                   "a point with several candidates takes the one of smallest area: the small object")
    got, want = case([[20.0, 20.0, 38.0, 38.0], [10.0, 10.0, 50.0, 50.0], [20.0, 20.0, 38.0, 38.0]])
    expect_matches(got, want, "two identical objects and a larger one",
                   "of candidates of equal area the lowest index wins")
    # Two levels of units 8 and 16 on a 64 x 64 image: ranges (0, 64) and (32, infinity).
    anchors, counts = fcos_points(64, (8, 16), (8, 16), torch.float64, device)
    for boxes, what, hint in (
            ([[0.0, 0.0, 64.0, 64.0]], "a 64 x 64 object on two levels", "the first level's range starts at 0 and the "
             "last level's never ends; in between, 4s < max(l, t, r, b) < 8s"),
            ([[24.0, 24.0, 40.0, 40.0]], "a 16 x 16 object on two levels", "the first level takes small objects "
             "(the first and the last level are open at their ends: 0 and infinity), the second only those with "
             "max(l, t, r, b) > 4 x 16"),
            ([[0.0, 0.0, 40.0, 64.0], [2.0, 2.0, 62.0, 62.0]], "two large objects on two levels", MATCH_HINT)):
        gt = torch.tensor(boxes, dtype=torch.float64, device=device)
        expect_matches(student.call("fcos_match", anchors, gt, counts, 1.5, failure="fcos_match failed ({error})"),
                       reference.fcos_match(anchors, gt, counts, 1.5), what, hint)
    # Three levels of units 4, 8, 16: an object of reach 32 sits exactly on a bound and belongs to no level
    anchors, counts = fcos_points(64, (8, 16, 32), (4, 8, 16), torch.float64, device)
    gt = torch.tensor([[0.0, 0.0, 64.0, 64.0]], dtype=torch.float64, device=device)
    expect_matches(student.call("fcos_match", anchors, gt, counts, 1.5, failure="fcos_match failed ({error})"),
                   reference.fcos_match(anchors, gt, counts, 1.5), "an object at exactly a level's bound",
                   "the range is open: 4s < max(l, t, r, b) < 8s, strictly on both sides")


@pytest.mark.function("fcos_match")
@pytest.mark.points(1)
def test_fcos_match_without_objects_and_speed(student, reference, device):
    anchors, counts = fcos_points(800, (8, 16, 32, 64, 128), (8, 16, 32, 64, 128), device=device)
    none = torch.zeros(0, 4, device=device)
    expect_matches(student.call("fcos_match", anchors, none, counts, 1.5,
                                failure="fcos_match failed for an image without objects ({error})"),
                   reference.fcos_match(anchors, none, counts, 1.5), "the matches of an image without objects",
                   "without objects every point is background, -1")
    cpu_anchors = anchors.cpu()
    expect_fast(student, reference, "fcos_match", lambda g: (cpu_anchors, objects(g, 30, 800), counts, 1.5),
                factor=5, seed=36,
                hint="compare all points with all objects at once in [N, M] tensors, not in a Python loop over points")


# fcos_targets -----------------------------------------------------------------------------------

TARGETS_HINT = ("(l, t, r, b) = ((x - x1) / w, (y - y1) / h, (x2 - x) / w, (y2 - y) / h), from the centre (x, y) of "
                "the point's anchor to the sides of its matched object, divided by the anchor's width w and height h; "
                "0 for points matched to nothing (-1)")


@pytest.mark.function("fcos_targets")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.sampled_from(range(len(LAYOUTS))), st.integers(0, 8), st.booleans(),
       st.sampled_from([torch.float32, torch.float64]))
def test_fcos_targets_of_random_matches(student, reference, device, seed, layout, count, stretched, dtype):
    strides, units = LAYOUTS[layout]
    anchors, counts = fcos_points(128, strides, units, dtype, device)
    g = generator(seed)
    if stretched:  # anchors that are not squares: l and r divide by the width, t and b by the height
        anchors = anchors * torch.tensor([1.0, 0.5, 1.0, 0.5], dtype=dtype, device=device)
    gt = objects(g, count, 128, dtype, device)
    matched = torch.randint(-1, max(count, 1), (len(anchors),), generator=g).to(device) if count else \
        torch.full((len(anchors),), -1, device=device)
    got = student.call("fcos_targets", anchors, gt, matched,
                       failure=f"fcos_targets failed for {len(anchors)} points and {count} objects ({{error}})")
    expect_close(got, reference.fcos_targets(anchors, gt, matched),
                 f"the targets of {len(anchors)} points matched to {count} objects"
                 + (" (anchors twice as wide as high)" if stretched else ""), TARGETS_HINT, atol=1e-5)
    expect_unchanged(student, "fcos_targets")


@pytest.mark.function("fcos_targets")
@pytest.mark.points(1)
def test_fcos_targets_of_background_and_edge_cases(student, reference, device):
    anchors, counts = fcos_points(64, (8, 16), (8, 16), torch.float64, device)
    gt = torch.tensor([[5.0, 7.0, 40.0, 33.0], [30.0, 20.0, 60.0, 62.0]], dtype=torch.float64, device=device)
    matched = reference.fcos_match(anchors, gt, counts, 1.5)
    got = student.call("fcos_targets", anchors, gt, matched, failure="fcos_targets failed ({error})")
    want = reference.fcos_targets(anchors, gt, matched)
    expect_tensor_like(got, want, f"the targets of {len(anchors)} points")
    background = (matched == -1).cpu()
    expect(bool((got.cpu()[background] == 0).all()), "points matched to nothing (-1) must have the targets 0, not "
                                                     "those of object 0")
    expect_close(got, want, "the targets of FCOS's own matches", TARGETS_HINT, atol=1e-12)
    none = torch.zeros(0, 4, dtype=torch.float64, device=device)
    unmatched = torch.full((len(anchors),), -1, device=device)
    expect_close(student.call("fcos_targets", anchors, none, unmatched,
                              failure="fcos_targets failed for an image without objects ({error})"),
                 reference.fcos_targets(anchors, none, unmatched), "the targets without objects",
                 "without objects every target is 0: a float[N, 4] of zeros", atol=0)
    expect_close(student.fcos_targets(noncontiguous(anchors), gt, matched), want,
                 "the targets of anchors stored non-contiguously", TARGETS_HINT, atol=1e-12)
    expect_unchanged(student, "fcos_targets")


# centerness -------------------------------------------------------------------------------------

CENTRE_HINT = "sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b)) for each row (l, t, r, b) of the last dimension"


@pytest.mark.function("centerness")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.sampled_from([(1,), (50,), (3, 17), (2, 2, 5)]),
       st.sampled_from([torch.float32, torch.float64]))
def test_centerness_of_random_targets(student, reference, device, seed, leading, dtype):
    ltrb = (0.05 + torch.rand(*leading, 4, generator=generator(seed), dtype=torch.float64) * 10).to(dtype).to(device)
    got = student.call("centerness", ltrb, failure=f"centerness failed on a {list(ltrb.shape)} input ({{error}}): "
                                                   f"{CENTRE_HINT}")
    expect_close(got, reference.centerness(ltrb), f"the centre-ness of a {list(ltrb.shape)} input", CENTRE_HINT,
                 atol=1e-6)
    expect_unchanged(student, "centerness")


@pytest.mark.function("centerness")
@pytest.mark.points(1)
def test_centerness_of_special_points(student, reference, device):
    ltrb = torch.tensor([[2.0, 3.0, 2.0, 3.0], [1.0, 2.0, 4.0, 3.0], [4.0, 2.0, 1.0, 3.0], [1.0, 9.0, 1.0, 1.0],
                         [0.5, 2.0, 8.0, 0.25]], dtype=torch.float64, device=device)
    got = student.call("centerness", ltrb, failure="centerness failed ({error})")
    want = reference.centerness(ltrb)
    expect_tensor_like(got, want, "the centre-ness of 5 rows", hint="one value per row of 4")
    expect(bool(torch.isclose(got[1].cpu(), got[2].cpu())),
           "swapping l and r (or t and b) must not change the centre-ness: the pairs are (l, r) and (t, b)")
    expect(bool(torch.isclose(got[1].cpu(), want[1].cpu())),
           "the centre-ness takes min / max within each pair, (l, r) and then (t, b), not over all four")
    expect(bool(torch.isclose(got[0].cpu(), torch.tensor(1.0, dtype=torch.float64))),
           "a point at the centre of its box (l = r, t = b) must have centre-ness 1")
    expect_close(got, want, "the centre-ness of points off centre", CENTRE_HINT, atol=1e-12)
    empty = torch.zeros(0, 4, device=device)
    expect_close(student.call("centerness", empty, failure="centerness failed on an empty input ({error})"),
                 reference.centerness(empty), "the centre-ness of no rows", "no rows give an empty result", atol=0)
    wide = torch.rand(6, 8, generator=generator(37), dtype=torch.float64).to(device) + 0.1
    view = wide[:, ::2]
    expect_close(student.centerness(view), reference.centerness(view.contiguous()),
                 "the centre-ness of rows stored non-contiguously", CENTRE_HINT, atol=1e-12)
    expect_unchanged(student, "centerness")


# hungarian_match --------------------------------------------------------------------------------

def expect_optimal_assignment(got, cost: torch.Tensor, best: float, what: str) -> None:
    """(rows, cols) is a valid assignment of every column of cost, sorted by row, of total cost best."""
    queries, count = cost.shape
    expect(isinstance(got, tuple) and len(got) == 2, f"{what}: hungarian_match must return a tuple (rows, cols)")
    rows, cols = got
    for name, value in (("rows", rows), ("cols", cols)):
        expect(isinstance(value, torch.Tensor) and value.dim() == 1 and len(value) == count,
               f"{what}: {name} must be a one-dimensional tensor of {count} indices (one pair per column)")
        expect(value.dtype == torch.int64, f"{what}: {name} has dtype {value.dtype} where torch.int64 was expected")
        expect(value.device.type == cost.device.type, f"{what}: {name} is on {value.device.type}, not on the cost's "
                                                      "device")
    rows, cols = rows.cpu().tolist(), cols.cpu().tolist()
    expect(sorted(cols) == list(range(count)), f"{what}: every column (object) must appear exactly once in cols")
    expect(all(0 <= r < queries for r in rows) and len(set(rows)) == count,
           f"{what}: rows must be distinct row indices: a prediction takes at most one object")
    expect(rows == sorted(rows), f"{what}: the pairs must be sorted by row (increasing)")
    total = float(cost.cpu().double()[rows, cols].sum()) if count else 0.0
    expect(total <= best + 1e-9 * max(1.0, abs(best)),
           f"{what}: the assignment is valid but not the lowest total cost; each choice must stay open to revision "
           "(augmenting paths), as the Hungarian algorithm does, and the cost is minimised, not maximised")


def optimum(reference, cost) -> float:
    rows, cols = reference.hungarian_match(cost)
    return float(cost.cpu().double()[rows.cpu(), cols.cpu()].sum())


@pytest.mark.function("hungarian_match")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(0, 9), st.integers(0, 6), st.sampled_from(["normal", "ties", "wide"]),
       st.sampled_from([torch.float32, torch.float64]))
def test_hungarian_match_of_random_costs(student, reference, device, seed, count, extra, kind, dtype):
    g = generator(seed)
    queries = count + extra
    if kind == "ties":  # small whole numbers: many optimal assignments, any of them is right
        cost = torch.randint(0, 4, (queries, count), generator=g).to(torch.float64)
    elif kind == "wide":
        cost = torch.randn(queries, count, generator=g, dtype=torch.float64) * 100 - 50
    else:
        cost = torch.randn(queries, count, generator=g, dtype=torch.float64)
    cost = cost.to(dtype).to(device)
    got = student.call("hungarian_match", cost,
                       failure=f"hungarian_match failed on a {queries} x {count} cost ({{error}})")
    expect_optimal_assignment(got, cost, optimum(reference, cost), f"the assignment of a {queries} x {count} cost")
    expect_unchanged(student, "hungarian_match")


@pytest.mark.function("hungarian_match")
@pytest.mark.points(1)
def test_hungarian_match_where_greedy_fails_and_edge_cases(student, reference, device):
    # Taken in order, each column's cheapest free row costs 1 + 10 + 1 = 12; the optimum is 8.
    trap = torch.tensor([[1.0, 10.0, 7.0], [2.0, 3.0, 9.0], [9.0, 9.0, 1.0], [5.0, 6.0, 8.0]], device=device)
    got = student.call("hungarian_match", trap, failure="hungarian_match failed on a 4 x 3 cost ({error})")
    expect_optimal_assignment(got, trap, optimum(reference, trap),
                              "a 4 x 3 cost where taking each column's cheapest free row in turn (greedy) is not "
                              "optimal")
    expect_unchanged(student, "hungarian_match")
    for queries, count, what in ((5, 0, "no objects (a 5 x 0 cost)"), (1, 1, "a 1 x 1 cost"),
                                 (6, 6, "a square 6 x 6 cost")):
        cost = torch.randn(queries, count, generator=generator(38 + queries), dtype=torch.float64).to(device)
        got = student.call("hungarian_match", cost, failure=f"hungarian_match failed on {what} ({{error}})")
        expect_optimal_assignment(got, cost, optimum(reference, cost), f"the assignment of {what}")
    square = torch.randn(7, 7, generator=generator(45), dtype=torch.float64).to(device)
    view = square.t()[:, :5]  # 7 x 5, not contiguous
    got = student.call("hungarian_match", view, failure="hungarian_match failed on a non-contiguous cost ({error})")
    expect_optimal_assignment(got, view, optimum(reference, view.contiguous()),
                              "the assignment of a 7 x 5 cost stored non-contiguously")
    negative = -torch.rand(8, 4, generator=generator(46), dtype=torch.float64).to(device) * 10
    got = student.call("hungarian_match", negative, failure="hungarian_match failed on negative costs ({error})")
    expect_optimal_assignment(got, negative, optimum(reference, negative),
                              "the assignment of an 8 x 4 cost of negative numbers (DETR's costs are negative)")


def detr_costs(g, queries=100, count=30):
    """A DETR-like cost: -probability + 5 L1 - 2 GIoU of random predictions, many near the objects."""
    objects_ = torch.cat([torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1,
                          torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.3 + 0.02], 1)
    near = objects_[torch.randint(0, count, (queries,), generator=g)]
    predictions = (near + torch.randn(queries, 4, generator=g, dtype=torch.float64) * 0.05).clamp(0.01, 0.99)
    probability = torch.rand(queries, count, generator=g, dtype=torch.float64)
    centre_distance = (predictions[:, None, :2] - objects_[None, :, :2]).abs().sum(-1)
    size_gap = (predictions[:, None, 2:] - objects_[None, :, 2:]).abs().sum(-1)
    return (-probability + 5 * (centre_distance + size_gap) - 2 * torch.exp(-4 * centre_distance)).float()


@pytest.mark.function("hungarian_match")
@pytest.mark.points(1)
def test_hungarian_match_speed_at_detr_sizes(student, reference, device):
    cost = detr_costs(generator(39)).to(device)
    got = student.call("hungarian_match", cost, failure="hungarian_match failed on a 100 x 30 cost ({error})")
    expect_optimal_assignment(got, cost, optimum(reference, cost), "the assignment of a 100 x 30 cost like DETR's")
    # The reference runs in about 0.2 to 0.4 ms here, 3 to 10 times scipy's compiled solver
    # (bench/modern.py); a Hungarian algorithm written with Python lists takes about 10 times the
    # reference (under the 20 ms floor), and trying permutations never finishes.
    expect_fast(student, reference, "hungarian_match", lambda g: (detr_costs(g),), factor=100, seed=40,
                hint="use the Hungarian algorithm (potentials and augmenting paths, O(G^2 Q) steps), not a search over "
                     "permutations")


# detr_loss --------------------------------------------------------------------------------------

DETR_HINT = ("the matching minimises C = -w_class p(label) + w_L1 |b_q - b_g|_1 - w_GIoU GIoU (without gradient) with "
             "hungarian_match; loss_ce is the cross-entropy of every prediction against its matched label or the "
             "'no object' class (the last), weighted by eos_coef for 'no object' (a weighted mean); loss_bbox and "
             "loss_giou sum |b_q - b_g|_1 and 1 - GIoU over the matched pairs (boxes as (cx, cy, w, h), turned into "
             "corners for the GIoU) and divide by max(G, 1)")
TERM_HINTS = {"loss_ce": "every prediction counts, matched or not; 'no object' targets weigh eos_coef in a weighted "
                         "mean (F.cross_entropy with weight=)",
              "loss_bbox": "the L1 distance of the matched pairs on (cx, cy, w, h), divided by the number of objects",
              "loss_giou": "1 - GIoU of the matched pairs, with the boxes turned into corners (cx - w/2, cy - h/2, "
                           "cx + w/2, cy + h/2), divided by the number of objects"}


def detr_case(seed, queries, classes, count, dtype=torch.float32):
    g = generator(seed)
    logits = (torch.randn(queries, classes + 1, generator=g, dtype=torch.float64) * 2).to(dtype)
    boxes = torch.cat([torch.rand(queries, 2, generator=g, dtype=torch.float64) * 0.7 + 0.15,
                       torch.rand(queries, 2, generator=g, dtype=torch.float64) * 0.3 + 0.03], 1).to(dtype)
    labels = torch.randint(0, classes, (count,), generator=g)
    truth = torch.cat([torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.7 + 0.15,
                       torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.3 + 0.03], 1).to(dtype)
    return logits, boxes, labels, truth


def expect_losses(got, want, what: str) -> None:
    expect(isinstance(got, dict) and set(got) == set(want),
           f"{what}: detr_loss must return a dict with the keys {sorted(want)}")
    for key in ("loss_bbox", "loss_giou", "loss_ce"):
        expect_close(got[key], want[key], f"{what}: {key}", TERM_HINTS[key] + "; " + DETR_HINT, atol=1e-5, rtol=1e-5)


@pytest.mark.function("detr_loss")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 20), st.integers(1, 6), st.integers(0, 6),
       st.sampled_from([0.1, 0.5, 1.0]), st.sampled_from([(1, 5, 2), (2, 5, 2), (1, 1, 1)]),
       st.sampled_from([torch.float32, torch.float64]))
def test_detr_loss_of_random_images(student, reference, device, seed, queries, classes, count, eos, weights, dtype):
    count = min(count, queries)
    args = tuple(t.to(device) for t in detr_case(seed, queries, classes, count, dtype))
    got = student.call("detr_loss", *args, eos, weights,
                       failure=f"detr_loss failed for {queries} predictions and {count} objects ({{error}}): {DETR_HINT}")
    expect_losses(got, reference.detr_loss(*args, eos, weights),
                  f"the loss of {queries} predictions, {count} objects, eos_coef {eos}, weights {weights}")
    expect_unchanged(student, "detr_loss")


@pytest.mark.function("detr_loss")
@pytest.mark.points(1)
def test_detr_loss_gradients(student, reference, device):
    args = tuple(t.to(device) for t in detr_case(47, 12, 4, 5, torch.float64))
    upstream = {"loss_ce": torch.tensor(1.0, dtype=torch.float64), "loss_bbox": torch.tensor(5.0, dtype=torch.float64),
                "loss_giou": torch.tensor(2.0, dtype=torch.float64)}
    probe = {"kind": "backward", "wrt": [0, 1], "grad_output": upstream}
    got = student.call("detr_loss", *args, probe=probe,
                       failure="the gradient of detr_loss could not be computed ({error}): return a dict of the three "
                               "terms, each built from pred_logits or pred_boxes with differentiable operations")
    want = reference.call("detr_loss", *args, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient of the weighted loss with respect to pred_logits",
                 "every prediction's logits get a gradient from the cross-entropy; " + DETR_HINT, atol=1e-9)
    expect_close(got[1][1], want[1][1], "the gradient of the weighted loss with respect to pred_boxes",
                 "only matched predictions' boxes get a gradient (L1 and GIoU); the matching itself has none; "
                 + DETR_HINT, atol=1e-9)
    expect_unchanged(student, "detr_loss")


@pytest.mark.function("detr_loss")
@pytest.mark.points(1)
def test_detr_loss_matching_no_object_weight_and_no_objects(student, reference, device):
    # Prediction 0 sits on object 1 and prediction 2 on object 0: matching by index would pair them wrongly.
    logits = torch.tensor([[0.2, 2.0, 0.1, 0.3], [0.1, 0.1, 0.2, 2.5], [2.2, 0.3, 0.1, 0.2], [0.3, 0.2, 0.1, 3.0]],
                          device=device)
    boxes = torch.tensor([[0.7, 0.7, 0.2, 0.3], [0.2, 0.8, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2], [0.5, 0.1, 0.3, 0.1]],
                         device=device)
    labels = torch.tensor([0, 1], device=device)
    truth = torch.tensor([[0.32, 0.28, 0.22, 0.2], [0.68, 0.72, 0.2, 0.28]], device=device)
    for eos in (0.1, 1.0):
        got = student.call("detr_loss", logits, boxes, labels, truth, eos, (1, 5, 2),
                           failure="detr_loss failed for 4 predictions and 2 objects ({error})")
        expect_losses(got, reference.detr_loss(logits, boxes, labels, truth, eos, (1, 5, 2)),
                      f"4 predictions, two of them on the 2 objects in another order, eos_coef {eos}")
    none_labels, none_boxes = labels[:0], truth[:0]
    got = student.call("detr_loss", logits, boxes, none_labels, none_boxes, 0.1, (1, 5, 2),
                       failure="detr_loss failed for an image without objects ({error})")
    want = reference.detr_loss(logits, boxes, none_labels, none_boxes, 0.1, (1, 5, 2))
    expect(isinstance(got, dict) and set(got) == set(want), "detr_loss must return the same three keys without objects")
    expect(all(isinstance(got[k], torch.Tensor) and got[k].dim() == 0 and float(got[k]) == 0.0
               for k in ("loss_bbox", "loss_giou")),
           "without objects loss_bbox and loss_giou are 0: there are no pairs, and the sums divide by max(G, 1)")
    expect_close(got["loss_ce"], want["loss_ce"], "loss_ce without objects",
                 "without objects every prediction's target is 'no object' (the last class)", atol=1e-6)
