"""Hidden suite for a05-rpn: anchors, the RPN head, anchor matching and sampling, the RPN loss,
proposal filtering."""
import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops import box_iou

from autograder.checks import expect
from autograder.suites.support import (raised, GRADING, expect_close, expect_fast, expect_tensor_like, expect_unchanged,
                                       generator, random_boxes)

FUNCTIONS = {"generate_anchors": "generate-anchors", "RPNHead": "rpn-head", "match_anchors": "match-anchors",
             "sample_anchors": "sample-anchors", "rpn_loss": "rpn-loss", "filter_proposals": "filter-proposals"}
# A literal (the engine reads it without importing the suite). filter_proposals may use torchvision.ops
# (nms, clip_boxes_to_image, remove_small_boxes) and torchvision.models.detection._utils.BoxCoder; the
# modules holding RegionProposalNetwork are banned.
BANNED = {
    "generate_anchors": ["torchvision.models.detection"],
    "RPNHead": ["torchvision.models.detection"],
    "match_anchors": ["torchvision.models.detection"],
    "sample_anchors": ["torchvision.models.detection"],
    "rpn_loss": ["torchvision.models.detection"],
    "filter_proposals": ["torchvision.models.detection.rpn", "torchvision.models.detection.faster_rcnn",
                         "torchvision.models.detection.mask_rcnn", "torchvision.models.detection.keypoint_rcnn"],
}


# generate_anchors -----------------------------------------------------------------------------

@st.composite
def anchor_settings(draw):
    """(image_size, feature_size, sizes, aspect_ratios, dtype)."""
    height, width = draw(st.integers(8, 1000)), draw(st.integers(8, 1000))
    feature = (draw(st.integers(1, min(height, 40))), draw(st.integers(1, min(width, 40))))
    sizes = tuple(draw(st.lists(st.sampled_from([8, 16, 32, 33, 45, 64, 100, 128, 256, 512]), min_size=1, max_size=4,
                                unique=True)))
    ratios = tuple(draw(st.lists(st.sampled_from([0.25, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0]), min_size=1, max_size=4,
                                 unique=True)))
    return (height, width), feature, sizes, ratios, draw(st.sampled_from([torch.float32, torch.float64]))


@pytest.mark.function("generate_anchors")
@pytest.mark.points(1)
@GRADING
@given(anchor_settings())
def test_generate_anchors_of_random_maps(student, reference, device, settings):
    image_size, feature_size, sizes, ratios, dtype = settings
    got = student.call("generate_anchors", image_size, feature_size, sizes, ratios, dtype=dtype, device=device,
                       failure=f"generate_anchors failed on a {image_size} image with a {feature_size} map ({{error}})")
    want = reference.generate_anchors(image_size, feature_size, sizes, ratios, dtype=dtype, device=device)
    expect_close(got, want, f"the anchors of a {feature_size[0]} x {feature_size[1]} map for a {image_size[0]} x "
                            f"{image_size[1]} image with {len(sizes)} sizes and {len(ratios)} ratios",
                 "for each ratio r, for each size s: h = s sqrt(r), w = s / sqrt(r), corners +-w/2, +-h/2 rounded "
                 "with torch.round in float32; shifted by (j s_x, i s_y); location by location, row-major",
                 atol=0, rtol=0)


@pytest.mark.function("generate_anchors")
@pytest.mark.points(1)
def test_generate_anchors_order_and_strides(student, reference, device):
    for image_size, feature_size in (((100, 90), (7, 6)), ((600, 1000), (37, 62)), ((64, 64), (1, 1))):
        got = student.generate_anchors(image_size, feature_size, (32, 64), (0.5, 1.0, 2.0), device=device)
        want = reference.generate_anchors(image_size, feature_size, (32, 64), (0.5, 1.0, 2.0), device=device)
        expect_tensor_like(got, want, f"the anchors of a {feature_size} map for a {image_size} image")
        if not torch.equal(got.cpu(), want.cpu()):
            same_set = torch.equal(torch.unique(got.cpu(), dim=0), torch.unique(want.cpu(), dim=0))
            expect(False, f"the anchors of a {feature_size} map for a {image_size} image: " + (
                "the right anchors in the wrong order: location by location (row 0 left to right, then row 1, ...), "
                "and at each location ratio-major (every size of the first ratio, then the next ratio)" if same_set else
                "wrong positions: s_y = image height // map height and s_x = image width // map width (integer "
                "division), and location (i, j) shifts its anchors by (j s_x, i s_y, j s_x, i s_y)"))


@pytest.mark.function("generate_anchors")
@pytest.mark.points(1)
def test_generate_anchors_empty_and_speed(student, reference, device):
    for feature_size in ((0, 5), (4, 0)):
        expect_tensor_like(student.generate_anchors((64, 64), feature_size, (16,), (1.0,), device=device),
                           reference.generate_anchors((64, 64), feature_size, (16,), (1.0,), device=device),
                           f"the anchors of a {feature_size[0]} x {feature_size[1]} map")
    def large(g):  # maps of about 200 x 200 locations, a different size each run
        rows, columns = (int(n) for n in torch.randint(190, 211, (2,), generator=g))
        return (rows * 4, columns * 4), (rows, columns), (32, 64, 128), (0.5, 1.0, 2.0)

    expect_fast(student, reference, "generate_anchors", large, factor=10, seed=3,
                hint="build the shifts of all locations at once (torch.arange, torch.meshgrid) and add the k cell "
                     "anchors by broadcasting, not in a loop over locations")


# RPNHead --------------------------------------------------------------------------------------

def features(seed, channels, levels=((9, 11), (5, 6)), batch=2, device="cpu"):
    g = generator(seed)
    return [torch.randn(batch, channels, h, w, generator=g).to(device) for h, w in levels]


def module_report(proxy, *args, failure=None, **probe):
    return proxy.call("RPNHead", *args, probe={"kind": "module", **probe}, failure=failure)


@pytest.mark.function("RPNHead")
@pytest.mark.points(1)
def test_RPNHead_parameters_and_initialisation(student, reference):
    mine = module_report(student, 64, 9, failure="RPNHead(64, 9) could not be built: {error}")["state"]
    want = module_report(reference, 64, 9)["state"]
    shapes = {k: tuple(v.shape) for k, v in mine.items()}
    expected = {k: tuple(v.shape) for k, v in want.items()}
    expect(shapes == expected, f"RPNHead(64, 9) has the parameters {shapes} where torchvision's names and shapes "
                               f"{expected} were expected (conv.0.0 is the 3 x 3 conv in nn.Sequential(nn.Sequential("
                               "conv, ReLU)); cls_logits and bbox_pred the 1 x 1 convs)")
    expect(all(bool((mine[k] == 0).all()) for k in mine if k.endswith("bias")), "every bias must start at 0")
    for name, tolerance in (("conv.0.0.weight", 0.03), ("cls_logits.weight", 0.2), ("bbox_pred.weight", 0.1)):
        weights = mine[name].double()
        expect(abs(float(weights.std()) / 0.01 - 1) < tolerance and abs(float(weights.mean())) < 0.002,
               f"{name} has mean {float(weights.mean()):.4f} and standard deviation {float(weights.std()):.4f} where "
               "mean 0 and standard deviation 0.01 were expected (nn.init.normal_(weight, std=0.01))")
    weights = mine["conv.0.0.weight"].double()
    within = float((weights.abs() < 0.01).double().mean())
    expect(abs(within - 0.6827) < 0.02, f"{within:.1%} of the 3 x 3 conv's weights lie within 0.01 of 0 where a "
                                        "normal distribution with std 0.01 has 68.3 %: draw them from a normal "
                                        "distribution, not a uniform one")


@pytest.mark.function("RPNHead")
@pytest.mark.points(2)
def test_RPNHead_with_torchvision_weights_gives_its_outputs(student, reference, device):
    for channels, anchors, levels in ((16, 3, ((9, 11), (5, 6))), (8, 9, ((4, 4),)), (4, 1, ((1, 1), (3, 2), (6, 5)))):
        inputs = features(channels, channels, levels, device=device)
        want = module_report(reference, channels, anchors, inputs=inputs, backward=True)
        got = module_report(student, channels, anchors, inputs=inputs, state_dict=want["state"], backward=True,
                            failure=f"RPNHead({channels}, {anchors}) with torchvision's weights failed: {{error}}")
        outputs = got["outputs"]
        expect(isinstance(outputs, (tuple, list)) and len(outputs) == 2
               and all(isinstance(v, list) and len(v) == len(levels) for v in outputs),
               f"forward must return a pair of lists with one tensor per level ({len(levels)} levels)")
        for level in range(len(levels)):
            shapes = [tuple(getattr(outputs[i][level], "shape", ())) for i in (0, 1)]
            expect(shapes == [tuple(want["outputs"][i][level].shape) for i in (0, 1)],
                   f"level {level} gave outputs of shapes {shapes} for a {levels[level]} map: the 3 x 3 conv needs "
                   "padding 1 to keep the map's size, and the outputs have num_anchors and 4 * num_anchors channels")
            for kind, index, hint in (("objectness", 0, "the 1 x 1 conv cls_logits after the 3 x 3 conv and ReLU"),
                                      ("box deltas", 1, "the 1 x 1 conv bbox_pred after the 3 x 3 conv and ReLU")):
                expect_close(outputs[index][level], want["outputs"][index][level],
                             f"the {kind} of level {level} (RPNHead({channels}, {anchors}), torchvision's weights)",
                             hint + " (3 x 3 conv with padding 1; the same layers for every level)", atol=1e-6)
        for name, gradient in want["gradients"].items():
            expect_close(got["gradients"].get(name), gradient, f"the gradient of {name}",
                         "the outputs must come from the parameters through differentiable operations", atol=1e-5)


# match_anchors --------------------------------------------------------------------------------

@st.composite
def matching_cases(draw):
    """(seed, ground truths, anchors, (high, low), allow_low_quality_matches, dtype)."""
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 6)), draw(st.integers(1, 200)),
            draw(st.sampled_from([(0.7, 0.3), (0.5, 0.4), (0.5, 0.5), (0.6, 0.0)])), draw(st.booleans()),
            draw(st.sampled_from([torch.float32, torch.float64])))


@pytest.mark.function("match_anchors")
@pytest.mark.points(2)
@GRADING
@given(matching_cases())
def test_match_anchors_of_random_boxes(student, reference, device, case):
    seed, m, n, (high, low), low_quality, dtype = case
    g = generator(seed)
    truths = random_boxes(g, m, scale=60.0)
    # Anchors near the ground truths (some match well) and elsewhere (most do not).
    near = truths[torch.randint(0, m, (n,), generator=g)] + torch.randn(n, 4, generator=g, dtype=torch.float64) * 6
    anchors = torch.where((torch.rand(n, 1, generator=g) < 0.5), near, random_boxes(g, n, scale=90.0))
    anchors = torch.cat([anchors[:, :2], torch.maximum(anchors[:, 2:], anchors[:, :2] + 1)], dim=1)
    iou = box_iou(truths, anchors).to(dtype).to(device)  # torchvision's, in the grading process
    got = student.call("match_anchors", iou, high, low, low_quality,
                       failure=f"match_anchors failed on {m} ground truths and {n} anchors ({{error}})")
    expect_close(got, reference.match_anchors(iou, high, low, low_quality),
                 f"match_anchors of {m} ground truths x {n} anchors (thresholds {high}, {low}, "
                 f"allow_low_quality_matches={low_quality})",
                 "best ground truth (lowest index on ties) if its IoU >= high_threshold, -2 if >= low_threshold, else -1"
                 + ("; then every anchor that is some ground truth's best (ties included) gets its best ground truth "
                    "back" if low_quality else ""), atol=0, rtol=0)
    expect_unchanged(student, "match_anchors")


@pytest.mark.function("match_anchors")
@pytest.mark.points(1)
def test_match_anchors_ties_and_low_quality(student, reference, device):
    cases = {
        "two ground truths with the same best IoU for an anchor (the lower index wins)":
            [[0.8, 0.5, 0.2, 0.0], [0.8, 0.6, 0.2, 0.1]],
        "a ground truth whose best anchors tie (all of them are restored)":
            [[0.4, 0.4, 0.1, 0.4], [0.0, 0.2, 0.9, 0.0]],
        "a ground truth that overlaps no anchor (its best IoU is 0: every anchor with IoU 0 is restored)":
            [[0.0, 0.0, 0.0, 0.0], [0.1, 0.8, 0.25, 0.0]],
        "an anchor restored by one ground truth but matched to its own best one":
            [[0.35, 0.1, 0.0, 0.05], [0.5, 0.6, 0.1, 0.0]],
        "values exactly at the thresholds (>= high is positive, >= low is ignored)":
            [[0.7, 0.3, 0.2999, 0.6999]],
    }
    wrong = []  # every case is tried, and all the failing ones are named
    for what, values in cases.items():
        iou = torch.tensor(values, dtype=torch.float64, device=device)
        for low_quality in (False, True):
            got = student.match_anchors(iou, 0.7, 0.3, low_quality)
            want = reference.match_anchors(iou, 0.7, 0.3, low_quality)
            expect_tensor_like(got, want, f"match_anchors for {what}")
            if not torch.equal(got.cpu(), want.cpu()):
                wrong.append(f"for {what}, allow_low_quality_matches={low_quality}: got {got.tolist()} where "
                             f"{want.tolist()} was expected")
    expect(not wrong, "match_anchors went wrong " + "; and ".join(wrong))


@pytest.mark.function("match_anchors")
@pytest.mark.points(1)
def test_match_anchors_empty_and_speed(student, reference, device):
    for shape, missing in (((0, 5), "no ground truth"), ((3, 0), "no anchors")):
        message = raised(lambda: student.match_anchors(torch.zeros(shape, device=device), 0.7, 0.3, True))
        expect("ValueError" in message, f"with {missing} (iou of shape {shape}) match_anchors must raise a ValueError, "
                                        "as torchvision's Matcher does")
    expect_fast(student, reference, "match_anchors", lambda g: (torch.rand(20, 100_000, generator=g) ** 4, 0.7, 0.3, True),
                factor=10, seed=5,
                hint="use tensor operations over all anchors at once (max over the ground truths, torch.where), "
                     "not a loop over anchors or ground truths")


# sample_anchors -------------------------------------------------------------------------------

@st.composite
def sampling_cases(draw):
    """(seed, positives, negatives, ignored, batch_size_per_image, positive_fraction, labels dtype)."""
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 300)), draw(st.integers(0, 600)),
            draw(st.integers(0, 50)), draw(st.sampled_from([1, 16, 64, 256, 512])),
            draw(st.sampled_from([0.5, 0.25, 0.1, 1.0, 0.0])),
            draw(st.sampled_from([torch.float32, torch.int64])))


def labels_for(seed, positives, negatives, ignored, dtype=torch.float32, device="cpu"):
    g = generator(seed)
    values = torch.cat([torch.ones(positives), torch.zeros(negatives), -torch.ones(ignored)])
    values[: positives // 4] = 2  # any label >= 1 marks a positive anchor
    return values[torch.randperm(len(values), generator=g)].to(dtype).to(device)


@pytest.mark.function("sample_anchors")
@pytest.mark.points(1)
@GRADING
@given(sampling_cases())
def test_sample_anchors_counts_and_subsets(student, reference, device, case):
    seed, positives, negatives, ignored, batch, fraction, dtype = case
    labels = labels_for(seed, positives, negatives, ignored, dtype, device)
    what = f"{positives} positives, {negatives} negatives, batch {batch}, positive_fraction {fraction}"
    got = student.call("sample_anchors", labels, batch, fraction,
                       failure=f"sample_anchors failed ({what}): {{error}}")
    expect_unchanged(student, "sample_anchors")
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "sample_anchors must return (sampled_positive, "
                                                               "sampled_negative)")
    want = reference.sample_anchors(labels, batch, fraction)
    for mask, model, name in ((got[0], want[0], "sampled_positive"), (got[1], want[1], "sampled_negative")):
        expect_tensor_like(mask, model, f"{name} ({what})")
    positive, negative = got[0].cpu(), got[1].cpu()
    counts = (int(positive.sum()), int(negative.sum()))
    expected = (int(want[0].sum()), int(want[1].sum()))
    expect(counts == expected, f"{what}: sampled {counts[0]} positives and {counts[1]} negatives where {expected[0]} "
                               f"and {expected[1]} were expected (positives: min(#positives, int(batch * fraction)); "
                               "negatives fill the rest of the batch, up to #negatives)")
    values = labels.cpu()
    expect(bool((values[positive] >= 1).all()) and bool((values[negative] == 0).all()),
           f"{what}: sampled_positive must mark only anchors labelled >= 1 and sampled_negative only anchors "
           "labelled 0 (never an ignored anchor, labelled -1)")


def seeded(proxy, labels, batch, fraction, seeds, with_generator=True):
    return proxy.call("sample_anchors", labels, batch, fraction,
                      probe={"kind": "seeded", "seeds": list(seeds), "generator": with_generator},
                      failure="sample_anchors failed when called with different random generators: {error}")


def chi_square(counts, expected):
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.function("sample_anchors")
@pytest.mark.points(1)
def test_sample_anchors_is_uniform(student, device):
    # 2 of 4 positives and 3 of 5 negatives, 3000 times: every subset equally likely.
    labels = torch.tensor([0.0, 1, 0, 1, 0, 1, 0, 0, 1, -1], device=device)
    positive, negative = seeded(student, labels, 5, 0.4, range(3000))
    expect(positive.shape == (3000, 10) and negative.shape == (3000, 10), "sample_anchors must return two bool[N] masks")
    for masks, pool, size, name in ((positive, [1, 3, 5, 8], 2, "positives"), (negative, [0, 2, 4, 6, 7], 3, "negatives")):
        subsets = list(itertools.combinations(pool, size))
        index = {s: i for i, s in enumerate(subsets)}
        counts = torch.zeros(len(subsets), dtype=torch.float64)
        for row in masks.cpu():
            chosen = tuple(int(i) for i in torch.nonzero(row).flatten())
            if chosen in index:
                counts[index[chosen]] += 1
        expect(counts.sum() == 3000, f"some samples of {name} were not {size} of the {len(pool)} {name}")
        # With 3000 fair draws the statistic exceeds these limits with probability below 1e-6.
        limit = {6: 36.0, 10: 46.0}[len(subsets)]
        expect(chi_square(counts, 3000 / len(subsets)) < limit,
               f"choosing {size} of {len(pool)} {name} 3000 times, some subsets came up far more often than others "
               f"(from {int(counts.min())} to {int(counts.max())} times where about {3000 // len(subsets)} were "
               "expected): every subset must be equally likely (e.g. the first entries of torch.randperm)")
    # 10 of 100 positives, 2000 times: every positive about 200 times.
    labels = labels_for(7, 100, 10, 0, device=device)
    positive, _ = seeded(student, labels, 20, 0.5, range(2000))
    picked = positive.cpu().double().sum(0)[labels.cpu() >= 1]
    expect(chi_square(picked, 200.0) < 190, f"choosing 10 of 100 positives 2000 times, single positives were chosen "
                                            f"from {int(picked.min())} to {int(picked.max())} times where about 200 "
                                            "were expected: every positive must be equally likely")


@pytest.mark.function("sample_anchors")
@pytest.mark.points(1)
def test_sample_anchors_follows_its_generator(student, device):
    labels = labels_for(8, 30, 300, 10, device=device)
    positive, negative = seeded(student, labels, 32, 0.25, [11, 11, 12])
    expect(torch.equal(positive[0], positive[1]) and torch.equal(negative[0], negative[1]),
           "two calls with generators seeded alike gave different samples: draw every random number from `generator` "
           "(torch.randperm(n, generator=generator, device=...))")
    expect(not torch.equal(negative[0], negative[2]),
           "generators seeded differently gave the same sample: do not seed or replace the generator yourself")
    positive, negative = seeded(student, labels, 32, 0.25, [21, 21, 22], with_generator=False)
    expect(torch.equal(negative[0], negative[1]) and not torch.equal(negative[0], negative[2]),
           "without a generator the sample must come from PyTorch's global generator (the same torch.manual_seed, the "
           "same sample; another seed, another sample)")


# rpn_loss -------------------------------------------------------------------------------------

@st.composite
def loss_cases(draw):
    """(seed, anchors, fraction of positives sampled, fraction of negatives sampled, dtype)."""
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 400)), draw(st.sampled_from([0.0, 0.3, 1.0])),
            draw(st.sampled_from([0.1, 0.5, 1.0])), draw(st.sampled_from([torch.float32, torch.float64])))


def loss_inputs(seed, n, take_positive, take_negative, dtype=torch.float64, device="cpu"):
    g = generator(seed)
    objectness = torch.randn(n, generator=g, dtype=torch.float64) * 2
    deltas = torch.randn(n, 4, generator=g, dtype=torch.float64) * 0.3
    targets = deltas + torch.randn(n, 4, generator=g, dtype=torch.float64) * torch.tensor([0.02, 0.05, 0.2, 1.0],
                                                                                          dtype=torch.float64)
    labels = torch.randint(-1, 2, (n,), generator=g).to(torch.float64)
    chance = torch.rand(n, generator=g, dtype=torch.float64)
    positive = (labels == 1) & (chance < take_positive)
    negative = (labels == 0) & (chance < take_negative)
    return tuple(t.to(dtype).to(device) for t in (objectness, deltas, labels, targets)) + (positive.to(device),
                                                                                            negative.to(device))


@pytest.mark.function("rpn_loss")
@pytest.mark.points(1)
@GRADING
@given(loss_cases())
def test_rpn_loss_of_random_samples(student, reference, device, case):
    seed, n, take_positive, take_negative, dtype = case
    args = loss_inputs(seed, n, take_positive, take_negative, dtype, device)
    got = student.call("rpn_loss", *args, failure=f"rpn_loss failed on {n} anchors ({{error}})")
    expect_unchanged(student, "rpn_loss")
    want = reference.rpn_loss(*args)
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "rpn_loss must return (objectness_loss, box_loss)")
    expect_close(got[0], want[0], f"the objectness loss of {n} anchors",
                 "binary cross-entropy of the logits against the labels, averaged over the sampled anchors (positives "
                 "and negatives), not over all anchors", atol=1e-6)
    expect_close(got[1], want[1], f"the box loss of {n} anchors",
                 "smooth L1 with beta 1/9 summed over the 4 deltas of the sampled positives, divided by the number of "
                 "all sampled anchors", atol=1e-6)


@pytest.mark.function("rpn_loss")
@pytest.mark.points(1)
def test_rpn_loss_box_term(student, reference, device):
    # One sampled positive among 100 sampled anchors; differences on both sides of beta = 1/9.
    objectness, deltas, labels, targets, positive, negative = loss_inputs(3, 200, 0.0, 1.0, device=device)
    labels[0], positive[0], negative[0] = 1.0, True, False
    negative &= torch.arange(200, device=device) < 120
    deltas[0] = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    targets[0] = torch.tensor([0.05, -0.1, 0.3, -2.0], dtype=torch.float64)
    args = (objectness, deltas, labels, targets, positive, negative)
    got, want = student.rpn_loss(*args), reference.rpn_loss(*args)
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "rpn_loss must return (objectness_loss, box_loss)")
    expect_close(got[1], want[1], "the box loss of one sampled positive among many sampled negatives",
                 "smooth L1: 0.5 d^2 / beta for |d| < beta, |d| - 0.5 beta otherwise, beta = 1/9; summed, then divided "
                 "by the number of all sampled anchors (not the positives only)", atol=1e-9)


@pytest.mark.function("rpn_loss")
@pytest.mark.points(1)
def test_rpn_loss_gradient_and_nothing_sampled(student, reference, device):
    args = loss_inputs(4, 150, 0.5, 0.5, device=device)
    probe = {"kind": "backward", "wrt": [0, 1]}
    got = student.call("rpn_loss", *args, probe=probe,
                       failure="the gradient of the RPN losses could not be computed ({error}): build both losses "
                               "from objectness and pred_bbox_deltas with differentiable operations")
    want = reference.call("rpn_loss", *args, probe=probe)
    for index, name in ((0, "objectness"), (1, "pred_bbox_deltas")):
        expect_close(got[1][index], want[1][index], f"the gradient of the two losses with respect to {name}",
                     "only sampled anchors (and, for the box loss, sampled positives) get a gradient", atol=1e-9)
    nothing = torch.zeros(150, dtype=torch.bool, device=device)
    empty = args[:4] + (nothing, nothing)
    got = student.call("rpn_loss", *empty, probe=probe,
                       failure="rpn_loss with nothing sampled failed ({error}): the same operations on an empty "
                               "sample give nan losses that still depend on the inputs, as torchvision's do")
    losses = got[0]
    expect(all(isinstance(v, torch.Tensor) and v.shape == () and bool(torch.isnan(v)) for v in losses),
           "with nothing sampled both losses must be nan (scalars), as torchvision's: a mean over no anchors")


# filter_proposals -----------------------------------------------------------------------------

@st.composite
def proposal_cases(draw):
    """(seed, anchors, image (height, width), pre_nms_top_n, post_nms_top_n, nms_thresh, score_thresh, min_size,
    dtype)."""
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 400)),
            (draw(st.integers(20, 200)), draw(st.integers(20, 200))), draw(st.sampled_from([5, 50, 300, 1000])),
            draw(st.sampled_from([1, 10, 100, 1000])), draw(st.sampled_from([0.3, 0.5, 0.7])),
            draw(st.sampled_from([0.0, 0.2, 0.5])), draw(st.sampled_from([1e-3, 1.0, 4.0])),
            draw(st.sampled_from([torch.float32, torch.float64])))


def proposal_inputs(seed, n, image_size, dtype=torch.float64, device="cpu"):
    """Anchors around and across the image, distinct logits (no ties after the sigmoid), deltas."""
    g = generator(seed)
    height, width = image_size
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([width, height]) * 1.2 - 10
    anchors = torch.cat([corner, corner + 4 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 60], dim=1)
    objectness = torch.randperm(n, generator=g).to(torch.float64) * (12.0 / n) - 6.0
    deltas = torch.randn(n, 4, generator=g, dtype=torch.float64) * 0.4
    deltas[torch.rand(n, generator=g) < 0.05, 2] = 6.0  # beyond log(1000 / 16): clamped
    deltas[torch.rand(n, generator=g) < 0.05, 3] = -8.0  # flat boxes: dropped by min_size
    return anchors.to(dtype).to(device), objectness.to(dtype).to(device), deltas.to(dtype).to(device)


@pytest.mark.function("filter_proposals")
@pytest.mark.points(2)
@GRADING
@given(proposal_cases())
def test_filter_proposals_of_random_maps(student, reference, device, case):
    seed, n, image_size, pre, post, nms_thresh, score_thresh, min_size, dtype = case
    anchors, objectness, deltas = proposal_inputs(seed, n, image_size, dtype, device)
    args = (anchors, objectness, deltas, image_size, pre, post, nms_thresh, score_thresh, min_size)
    got = student.call("filter_proposals", *args, failure=f"filter_proposals failed on {n} anchors ({{error}})")
    expect_unchanged(student, "filter_proposals")
    want = reference.filter_proposals(*args)
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "filter_proposals must return (boxes, scores)")
    what = (f"the proposals of {n} anchors (pre_nms_top_n {pre}, post_nms_top_n {post}, nms_thresh {nms_thresh}, "
            f"score_thresh {score_thresh}, min_size {min_size})")
    hint = ("in this order: top-k logits, decode (dw, dh at most log(1000/16)), clip to the image, drop boxes with "
            "width or height < min_size, sigmoid, keep scores >= score_thresh, NMS, first post_nms_top_n")
    tolerance = 1e-4 if dtype == torch.float32 else 1e-9
    expect_close(got[1], want[1], f"the scores of {what}", hint, atol=tolerance)
    expect_close(got[0], want[0], f"the boxes of {what}", hint, atol=tolerance)


def inside_anchors(seed, n, device):
    """n anchors well inside a 120 x 160 image with distinct positive logits (0.5 to 12.5) and zero
    deltas: decoding and clipping change nothing, so each case below tries one step alone."""
    g = generator(seed)
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * 50 + 10  # inside even if height, width swap
    anchors = torch.cat([corner, corner + 5 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 35], dim=1)
    logits = torch.randperm(n, generator=g).to(torch.float64) * (12.0 / n) + 0.5
    return anchors.to(device), logits.to(device), torch.zeros(n, 4, dtype=torch.float64, device=device)


@pytest.mark.function("filter_proposals")
@pytest.mark.points(1)
def test_filter_proposals_steps(student, reference, device):
    """Each case isolates one step; NMS threshold 1.0 suppresses nothing."""
    anchors, logits, zero = inside_anchors(11, 300, device)
    crossing, positive, deltas = proposal_inputs(12, 300, (120, 160), device=device)
    positive = positive + 6.5  # all logits positive: raw logits and probabilities keep the same boxes
    flat = zero.clone()
    flat[::3, 3] = -6.0  # a third of the boxes 400 times flatter: below min_size 2
    cases = [  # (what, arguments, compare the scores too)
        ("only the pre_nms_top_n highest logits go on (top-k comes first)",
         (anchors, logits, zero, (120, 160), 20, 300, 1.0, 0.0, 1e-3), False),
        ("x is clipped into [0, width] and y into [0, height], with image_size = (height, width)",
         (crossing, positive, deltas, (120, 160), 300, 300, 1.0, 0.0, 1e-3), False),
        ("boxes narrower or flatter than min_size after clipping are dropped",
         (anchors, logits, flat, (120, 160), 300, 300, 1.0, 0.0, 2.0), False),
        ("the scores are the sigmoid of the logits, and score_thresh keeps the scores >= it",
         (anchors, logits, zero, (120, 160), 300, 300, 1.0, 0.99, 1e-3), True),
        ("NMS then keeps post_nms_top_n boxes, highest score first",
         (anchors, logits, zero, (120, 160), 300, 7, 0.3, 0.0, 1e-3), True),
    ]
    for what, args, scores in cases:
        got, want = student.filter_proposals(*args), reference.filter_proposals(*args)
        expect(isinstance(got, (tuple, list)) and len(got) == 2, "filter_proposals must return (boxes, scores)")
        expect_close(got[0], want[0], f"the boxes of a case where {what},", "they differ from the expected ones",
                     atol=1e-9)
        if scores:
            expect_close(got[1], want[1], f"the scores of a case where {what},", "they differ from the expected ones",
                         atol=1e-9)


@pytest.mark.function("filter_proposals")
@pytest.mark.points(1)
def test_filter_proposals_no_gradient_empty_and_speed(student, reference, device):
    anchors, objectness, deltas = proposal_inputs(12, 50, (64, 64), dtype=torch.float32, device=device)
    carries = student.call("filter_proposals", anchors, objectness, deltas, (64, 64), 30, 10, 0.7,
                           probe={"kind": "requires_grad", "wrt": [1, 2]})
    expect(carries == [False, False],
           "the proposals must carry no gradient back to objectness or the deltas (detach them): Faster R-CNN does "
           "not back-propagate through the proposals' coordinates")
    none = torch.zeros(0, 4, device=device), torch.zeros(0, device=device), torch.zeros(0, 4, device=device)
    got = student.filter_proposals(*none, (64, 64), 30, 10, 0.7)
    want = reference.filter_proposals(*none, (64, 64), 30, 10, 0.7)
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "filter_proposals must return (boxes, scores)")
    expect_tensor_like(got[0], want[0], "the proposals of no anchors")
    expect_tensor_like(got[1], want[1], "the scores of no anchors")
    expect_fast(student, reference, "filter_proposals",
                lambda g: proposal_inputs(int(torch.randint(0, 2**31 - 1, (1,), generator=g)), 20_000, (800, 800),
                                          dtype=torch.float32) + ((800, 800), 2000, 1000, 0.7), factor=10, seed=13,
                hint="decode, clip and filter all boxes with tensor operations, not in a loop over boxes "
                     "(torchvision.ops.nms may do the suppression)")
