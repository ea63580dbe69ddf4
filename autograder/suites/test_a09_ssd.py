"""Hidden suite for a09-ssd: default boxes, matching, encoding, smooth L1, hard negative mining and
the SSD loss."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.support import GRADING, expect_close, expect_fast, expect_unchanged, generator

FUNCTIONS = {"default_boxes": "default-boxes", "match_default_boxes": "match-default-boxes",
             "encode_ssd": "encode-ssd", "smooth_l1": "smooth-l1", "hard_negative_mining": "hard-negative-mining",
             "ssd_loss": "ssd-loss"}
SSD_INTERNALS = ["torchvision.models.detection", "torchvision.ops"]
HUBER = ["torch.nn.functional.smooth_l1_loss", "torch.nn.functional.huber_loss", "torch.nn.SmoothL1Loss",
         "torch.nn.HuberLoss", "torch._C._nn.smooth_l1_loss", "torch._C._nn.huber_loss",
         "aten::smooth_l1_loss", "aten::huber_loss", "aten::smooth_l1_loss_backward", "aten::huber_loss_backward"]
BANNED = {"default_boxes": SSD_INTERNALS, "match_default_boxes": SSD_INTERNALS, "encode_ssd": SSD_INTERNALS,
          "smooth_l1": SSD_INTERNALS + HUBER, "hard_negative_mining": SSD_INTERNALS,
          "ssd_loss": SSD_INTERNALS + HUBER}

SSD300 = ([38, 19, 10, 5, 3, 1], [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], [[2], [2, 3], [2, 3], [2, 3], [2], [2]])
DEFAULTS_HINT = ("map by map, cell by cell row-major, and in each cell (s_k, s_k), (s'_k, s'_k) with "
                 "s'_k = sqrt(s_k s_(k+1)), then (s_k sqrt(r), s_k / sqrt(r)) and its transpose for each ratio; "
                 "centres ((j + 0.5) / f_cols, (i + 0.5) / f_rows), or (j + 0.5) step / W with steps; w, h clipped "
                 "to [0, 1] when clip; corners as fractions of the image")


# default_boxes --------------------------------------------------------------------------------

@st.composite
def box_layouts(draw):
    """(feature map sizes, scales, aspect ratios, clip)."""
    maps = draw(st.integers(1, 4))
    sizes = [draw(st.one_of(st.integers(1, 9), st.tuples(st.integers(1, 6), st.integers(1, 6)))) for _ in range(maps)]
    scales = sorted(draw(st.lists(st.floats(0.05, 1.3), min_size=maps + 1, max_size=maps + 1)))
    ratios = [draw(st.lists(st.sampled_from([2, 3, 0.5, 1.5]), max_size=3)) for _ in range(maps)]
    return sizes, scales, ratios, draw(st.booleans())


@pytest.mark.function("default_boxes")
@pytest.mark.points(2)
@GRADING
@given(box_layouts())
def test_default_boxes_of_random_layouts(student, reference, layout):
    sizes, scales, ratios, clip = layout
    got = student.call("default_boxes", sizes, scales, ratios, clip=clip,
                       failure=f"default_boxes failed for maps {sizes} ({{error}}): {DEFAULTS_HINT}")
    expect_close(got, reference.default_boxes(sizes, scales, ratios, clip=clip),
                 f"default_boxes of maps {sizes} with ratios {ratios}, clip={clip}", DEFAULTS_HINT, atol=1e-6)


@pytest.mark.function("default_boxes")
@pytest.mark.points(2)
def test_default_boxes_of_ssd300_and_steps(student, reference):
    steps = [8, 16, 32, 64, 100, 300]
    got = student.call("default_boxes", *SSD300, steps=steps, image_size=300,
                       failure=f"default_boxes failed for SSD300 ({{error}}): {DEFAULTS_HINT}")
    expect_close(got, reference.default_boxes(*SSD300, steps=steps, image_size=300), "SSD300's 8732 default boxes",
                 DEFAULTS_HINT, atol=1e-6)
    sizes, steps = [(4, 6), (2, 3)], [16, 32]
    got = student.call("default_boxes", sizes, [0.2, 0.5, 0.8], [[2], [3]], steps=steps, image_size=(64, 96),
                       failure="default_boxes failed for maps of 4 x 6 and 2 x 3 cells on a 64 x 96 image with steps "
                               f"({{error}}): {DEFAULTS_HINT}")
    expect_close(got, reference.default_boxes(sizes, [0.2, 0.5, 0.8], [[2], [3]], steps=steps, image_size=(64, 96)),
                 "default boxes of rectangular maps on a 64 x 96 image with steps 16 and 32",
                 "a map's size is (rows, columns), an image size (H, W): x divides by W, y by H; " + DEFAULTS_HINT,
                 atol=1e-6)


# match_default_boxes --------------------------------------------------------------------------

def scene(g, objects, count=300, dtype=torch.float32):
    """Ground truths and default boxes in image fractions, with some default boxes copying objects."""
    corner = torch.rand(objects, 2, generator=g, dtype=torch.float64) * 0.8
    gt = torch.cat([corner, corner + 0.02 + torch.rand(objects, 2, generator=g, dtype=torch.float64) * 0.4], 1)
    centre = torch.rand(count, 2, generator=g, dtype=torch.float64)
    size = 0.02 + torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.5
    defaults = torch.cat([centre - size / 2, centre + size / 2], 1)
    return gt.to(dtype), defaults.to(dtype)


MATCH_HINT = ("each default box takes its best ground truth if that IoU >= the threshold (else -1); then every ground "
              "truth takes its own best default box, even below the threshold, the later ground truth winning a "
              "shared one")


@pytest.mark.function("match_default_boxes")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(0, 8), st.sampled_from([0.3, 0.5, 0.7]),
       st.sampled_from([torch.float32, torch.float64]))
def test_match_default_boxes_of_random_scenes(student, reference, device, seed, objects, threshold, dtype):
    gt, defaults = (t.to(device) for t in scene(generator(seed), objects, dtype=dtype))
    got = student.call("match_default_boxes", gt, defaults, threshold,
                       failure=f"match_default_boxes failed for {objects} objects ({{error}}): {MATCH_HINT}")
    expect_close(got, reference.match_default_boxes(gt, defaults, threshold),
                 f"the matches of 300 default boxes to {objects} objects at threshold {threshold}", MATCH_HINT, atol=0)


@pytest.mark.function("match_default_boxes")
@pytest.mark.points(1)
def test_match_default_boxes_forced_and_shared_best_boxes(student, reference, device):
    defaults = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0],
                             [0.1, 0.1, 0.3, 0.3], [0.0, 0.0, 0.5, 0.26]], device=device)
    # ground truth 4 has IoU exactly 0.5 with default box 0 and its best box is box 5
    gt = torch.tensor([[0.12, 0.12, 0.2, 0.2], [0.6, 0.6, 0.9, 0.95], [0.58, 0.58, 0.92, 0.92], [0.2, 0.6, 0.3, 0.7],
                       [0.0, 0.0, 0.5, 0.25]], device=device)
    for threshold in (0.5, 0.25):
        expect_close(student.match_default_boxes(gt, defaults, threshold),
                     reference.match_default_boxes(gt, defaults, threshold),
                     f"small objects, objects sharing a best box, an IoU exactly at the threshold {threshold}",
                     "an IoU equal to the threshold counts as a match (>=); every object is forced onto its best "
                     "box even below the threshold; when two objects share a best box, the later one gets it",
                     atol=0)
    expect_unchanged(student, "match_default_boxes")


@pytest.mark.function("match_default_boxes")
@pytest.mark.points(1)
def test_match_default_boxes_without_objects_and_speed(student, reference):
    defaults = reference.default_boxes(*SSD300, steps=[8, 16, 32, 64, 100, 300], image_size=300)
    none = torch.zeros(0, 4)
    expect_close(student.match_default_boxes(none, defaults, 0.5), reference.match_default_boxes(none, defaults, 0.5),
                 "the matches of an image without objects", "without objects every default box is -1", atol=0)
    expect_fast(student, reference, "match_default_boxes", lambda g: (scene(g, 20)[0], defaults, 0.5), factor=10,
                seed=41,
                hint="compute the IoU of all objects with all 8732 default boxes as one matrix, not in a loop over "
                     "default boxes")


# encode_ssd -----------------------------------------------------------------------------------

@pytest.mark.function("encode_ssd")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(0, 200), st.sampled_from([(0.1, 0.2), (1.0, 1.0), (0.2, 0.5)]),
       st.sampled_from([torch.float32, torch.float64]))
def test_encode_ssd_of_random_boxes(student, reference, device, seed, count, variances, dtype):
    g = generator(seed)
    _, defaults = scene(g, 0, count, dtype)
    matched = defaults + (torch.rand(count, 4, generator=g, dtype=torch.float64) * 0.04 - 0.02).to(dtype)
    args = (matched.to(device), defaults.to(device), variances)
    expect_close(student.encode_ssd(*args), reference.encode_ssd(*args),
                 f"the offsets of {count} boxes with variances {variances}",
                 "dx = (g_cx - d_cx) / d_w / v0, dy = (g_cy - d_cy) / d_h / v0, dw = log(g_w / d_w) / v1, "
                 "dh = log(g_h / d_h) / v1, from corners (x1, y1, x2, y2)", atol=1e-4, rtol=1e-5)
    expect_unchanged(student, "encode_ssd")


@pytest.mark.function("encode_ssd")
@pytest.mark.points(1)
def test_encode_ssd_round_trip(student, reference, device):
    g = generator(42)
    _, defaults = scene(g, 0, 50, torch.float64)
    offsets = torch.randn(50, 4, generator=g, dtype=torch.float64)
    size = defaults[:, 2:] - defaults[:, :2]
    centre = defaults[:, :2] + 0.5 * size + size * offsets[:, :2] * 0.1
    size = size * torch.exp(offsets[:, 2:] * 0.2)
    decoded = torch.cat([centre - 0.5 * size, centre + 0.5 * size], 1)
    expect_close(student.encode_ssd(decoded.to(device), defaults.to(device), (0.1, 0.2)), offsets.to(device),
                 "the offsets of boxes decoded with the slides' P_x = A_x + A_w dx ... (with the variances)",
                 "encoding must invert the decoding: P_x = A_x + A_w v0 dx, P_w = A_w exp(v1 dw)", atol=1e-9)


# smooth_l1 ------------------------------------------------------------------------------------

@pytest.mark.function("smooth_l1")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.sampled_from([1.0, 0.5, 1 / 9, 2.0, 0.0]),
       st.sampled_from([torch.float32, torch.float64]))
def test_smooth_l1_of_random_values(student, reference, device, seed, beta, dtype):
    x = (torch.randn(7, 5, generator=generator(seed), dtype=torch.float64) * 2).to(dtype).to(device)
    x[0, :3] = torch.tensor([beta, -beta, 0.0], dtype=dtype)  # the two sides of the switch
    expect_close(student.smooth_l1(x, beta), reference.smooth_l1(x, beta), f"smooth_l1 with beta {beta:.3g}",
                 "0.5 x^2 / beta where |x| < beta, |x| - 0.5 beta elsewhere; |x| when beta is 0; same shape",
                 atol=1e-6)
    expect_unchanged(student, "smooth_l1")


@pytest.mark.function("smooth_l1")
@pytest.mark.points(1)
def test_smooth_l1_gradient(student, reference, device):
    x = torch.linspace(-3, 3, 61, dtype=torch.float64, device=device)
    for beta in (1.0, 1 / 9):
        probe = {"kind": "backward", "wrt": [0]}
        got = student.call("smooth_l1", x, beta, probe=probe,
                           failure="the gradient of smooth_l1 could not be computed ({error})")
        want = reference.call("smooth_l1", x, beta, probe=probe)
        expect_close(got[1][0], want[1][0], f"the gradient of smooth_l1 with beta {beta:.3g}",
                     "x / beta inside (-beta, beta), the sign of x outside: it never exceeds 1 in size", atol=1e-12)


# hard_negative_mining -------------------------------------------------------------------------

MINING_HINT = ("per image, neg_pos_ratio x (its positives) background boxes with the largest loss (all of them if "
               "there are fewer; equal losses: lower index first); never a positive; none in an image without "
               "positives")


@pytest.mark.function("hard_negative_mining")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(0, 60), st.sampled_from([1, 3, 5]),
       st.booleans())
def test_hard_negative_mining_of_random_losses(student, reference, device, seed, n, count, ratio, ties):
    g = generator(seed)
    loss = torch.rand(n, count, generator=g, dtype=torch.float64)
    if ties:  # quantised losses tie often
        loss = (loss * 4).floor()
    labels = torch.where(torch.rand(n, count, generator=g) < 0.15, torch.randint(1, 4, (n, count), generator=g), 0)
    labels[0] = 0 if n > 1 else labels[0]  # an image without positives
    args = (loss.to(device), labels.to(device), ratio)
    expect_close(student.hard_negative_mining(*args), reference.hard_negative_mining(*args),
                 f"the hard negatives of {n} images of {count} boxes at {ratio}:1", MINING_HINT, atol=0)
    expect_unchanged(student, "hard_negative_mining")


@pytest.mark.function("hard_negative_mining")
@pytest.mark.points(1)
def test_hard_negative_mining_speed(student, reference):
    expect_fast(student, reference, "hard_negative_mining",
                lambda g: (torch.rand(32, 8732, generator=g), torch.where(torch.rand(32, 8732, generator=g) < 0.002, 1, 0),
                           3), factor=10, seed=43,
                hint="sort each image's losses once (or rank them) with tensor operations, not in a loop over boxes")


# ssd_loss -------------------------------------------------------------------------------------

LOSS_HINT = ("(cross-entropy of every positive + of the hard negatives chosen from the cross-entropy, 3 per positive "
             "in each image + alpha x smooth L1 (beta 1) of the positives' offsets, summed over x, y, w, h) / the "
             "number of positives in the batch (at least 1); background offsets do not count")


def loss_case(seed, n, count, classes, positive_rate=0.05, dtype=torch.float32):
    g = generator(seed)
    labels = torch.where(torch.rand(n, count, generator=g) < positive_rate, torch.randint(1, classes, (n, count), generator=g), 0)
    cls_logits = (torch.randn(n, count, classes, generator=g, dtype=torch.float64) * 2).to(dtype)
    loc_pred = torch.randn(n, count, 4, generator=g, dtype=torch.float64).to(dtype)
    loc_targets = torch.randn(n, count, 4, generator=g, dtype=torch.float64).to(dtype)
    loc_targets[labels == 0] = 1000.0  # background offsets mean nothing
    return cls_logits, loc_pred, labels, loc_targets


@pytest.mark.function("ssd_loss")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 120), st.integers(2, 5), st.sampled_from([1, 3]),
       st.sampled_from([1.0, 0.5]))
def test_ssd_loss_of_random_batches(student, reference, device, seed, n, count, classes, ratio, alpha):
    args = tuple(t.to(device) for t in loss_case(seed, n, count, classes)) + (ratio, alpha)
    got = student.call("ssd_loss", *args, failure=f"ssd_loss failed ({{error}}): {LOSS_HINT}")
    expect_close(got, reference.ssd_loss(*args), f"the loss of {n} images of {count} default boxes, {classes} classes, "
                 f"{ratio}:1, alpha {alpha}", LOSS_HINT, atol=1e-4, rtol=1e-5)


@pytest.mark.function("ssd_loss")
@pytest.mark.points(1)
def test_ssd_loss_gradients(student, reference, device):
    args = tuple(t.to(device) for t in loss_case(44, 2, 80, 4, dtype=torch.float64)) + (3, 1.0)
    probe = {"kind": "backward", "wrt": [0, 1], "grad_output": torch.tensor(1.0, dtype=torch.float64)}
    got = student.call("ssd_loss", *args, probe=probe, failure="the gradient of ssd_loss could not be computed "
                                                               "({error}): build the loss with differentiable operations")
    want = reference.call("ssd_loss", *args, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient of ssd_loss with respect to cls_logits",
                 "only positives and the chosen hard negatives send gradient to their logits; " + LOSS_HINT, atol=1e-10)
    expect_close(got[1][1], want[1][1], "the gradient of ssd_loss with respect to loc_pred",
                 "only positives' offsets get a gradient, bounded by alpha / positives; " + LOSS_HINT, atol=1e-10)
    expect_unchanged(student, "ssd_loss")


@pytest.mark.function("ssd_loss")
@pytest.mark.points(1)
def test_ssd_loss_without_positives(student, reference, device):
    cls_logits, loc_pred, labels, loc_targets = (t.to(device) for t in loss_case(45, 2, 50, 3))
    labels = torch.zeros_like(labels)
    got = student.call("ssd_loss", cls_logits, loc_pred, labels, loc_targets, 3, 1.0,
                       failure="ssd_loss failed for a batch without positives: {error}")
    expect(isinstance(got, torch.Tensor) and got.dim() == 0 and float(got) == 0.0,
           "a batch without positives has no negatives either: the loss is 0 (divide by at least 1, never by 0)")
