"""Hidden suite for a03-rcnn: the box coder, warping regions, ridge box regression, linear SVMs."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.support import (GRADING, expect_close, expect_fast, expect_tensor_like, expect_unchanged,
                                       generator, noncontiguous)

FUNCTIONS = {"encode_boxes": "encode-boxes", "decode_boxes": "decode-boxes", "warp_region": "warp-region",
             "fit_box_regressor": "fit-box-regressor", "train_linear_svm": "train-linear-svm"}
BANNED = {
    "encode_boxes": ["torchvision.models.detection._utils", "torchvision.models.detection"],
    "decode_boxes": ["torchvision.models.detection._utils", "torchvision.models.detection"],
    "warp_region": ["torchvision.ops", "torch.nn.functional.grid_sample", "torch.nn.functional.affine_grid",
                    "torch.grid_sampler", "torch.grid_sampler_2d", "aten::grid_sampler", "aten::grid_sampler_2d",
                    "aten::cudnn_grid_sampler", "aten::affine_grid_generator"],
    "fit_box_regressor": ["torch.linalg.lstsq", "torch.linalg.pinv", "numpy.linalg", "scipy", "sklearn",
                          "aten::linalg_lstsq"],
    "train_linear_svm": ["sklearn", "scipy"],
}
WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 4.0, 0.5)]


def boxes(g, n, dtype=torch.float64, scale=100.0):
    """Boxes of positive width and height."""
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    size = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale / 2 + 1
    return torch.cat([corner, corner + size], 1).to(dtype)


def pairs(g, n, dtype=torch.float64):
    """Ground-truth boxes and proposals near them."""
    truth = boxes(g, n, dtype)
    size = (truth[:, 2:] - truth[:, :2]).repeat(1, 2)
    proposal = truth + (torch.rand(n, 4, generator=g, dtype=torch.float64).to(dtype) - 0.5) * 0.6 * size
    proposal = torch.cat([torch.minimum(proposal[:, :2], proposal[:, 2:] - 1), proposal[:, 2:]], 1)
    return truth, proposal


@st.composite
def coder_inputs(draw):
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 50)), draw(st.sampled_from(WEIGHTS)),
            draw(st.sampled_from([torch.float32, torch.float64])))


# encode_boxes ---------------------------------------------------------------------------------

@pytest.mark.function("encode_boxes")
@pytest.mark.points(1)
@GRADING
@given(coder_inputs())
def test_encode_boxes_of_random_boxes(student, reference, device, params):
    seed, n, weights, dtype = params
    truth, proposal = (b.to(device) for b in pairs(generator(seed), n, dtype))
    expect_close(student.encode_boxes(truth, proposal, weights=weights),
                 reference.encode_boxes(truth, proposal, weights=weights), f"encode_boxes of {n} {dtype} boxes",
                 "tx = wx (Gx - Px) / Pw with centres, tw = ww log(Gw / Pw), and likewise for y and h",
                 atol=1e-5, rtol=1e-5)


@pytest.mark.function("encode_boxes")
@pytest.mark.points(1)
def test_encode_boxes_uses_centres(student, reference, device):
    truth, proposal = pairs(generator(1), 20)
    proposal[:, 0] = truth[:, 0]  # same left edge, different widths: the centres still differ
    truth, proposal = truth.to(device), proposal.to(device)
    got, want = student.encode_boxes(truth, proposal), reference.encode_boxes(truth, proposal)
    expect_close(got[:, :2] if isinstance(got, torch.Tensor) and got.dim() == 2 else got, want[:, :2],
                 "tx and ty", "tx and ty compare the boxes' centres (x1 + w / 2), not their corners, and "
                              "divide by the proposal's width or height", atol=1e-6)


@pytest.mark.function("encode_boxes")
@pytest.mark.points(1)
def test_encode_boxes_log_of_size_ratio(student, reference, device):
    truth, proposal = pairs(generator(2), 20)
    truth, proposal = truth.to(device), proposal.to(device)
    got, want = student.encode_boxes(truth, proposal), reference.encode_boxes(truth, proposal)
    expect_close(got[:, 2:] if isinstance(got, torch.Tensor) and got.dim() == 2 else got, want[:, 2:],
                 "tw and th", "tw = log(Gw / Pw) and th = log(Gh / Ph): a log of the ratio of sizes, so that "
                              "growing and shrinking by the same factor are symmetric", atol=1e-6)


@pytest.mark.function("encode_boxes")
@pytest.mark.points(1)
def test_encode_boxes_weights_dtype_and_empty(student, reference, device):
    truth, proposal = pairs(generator(3), 9)
    truth, proposal = truth.to(device), proposal.to(device)
    expect_close(student.encode_boxes(noncontiguous(truth), proposal, weights=(10.0, 10.0, 5.0, 5.0)),
                 reference.encode_boxes(truth, proposal, weights=(10.0, 10.0, 5.0, 5.0)),
                 "float64 targets with weights (10, 10, 5, 5)",
                 "each target is multiplied by its weight, in the dtype of reference_boxes", atol=1e-9)
    expect_unchanged(student, "encode_boxes")
    empty = torch.zeros(0, 4, device=device)
    expect_tensor_like(student.encode_boxes(empty, empty), reference.encode_boxes(empty, empty),
                       "encode_boxes of no boxes")


# decode_boxes ---------------------------------------------------------------------------------

@pytest.mark.function("decode_boxes")
@pytest.mark.points(1)
@GRADING
@given(coder_inputs())
def test_decode_boxes_of_random_offsets(student, reference, device, params):
    seed, n, weights, dtype = params
    g = generator(seed)
    _, proposal = pairs(g, n, dtype)
    deltas = (torch.randn(n, 4, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    expect_close(student.decode_boxes(deltas.to(device), proposal.to(device), weights=weights),
                 reference.decode_boxes(deltas.to(device), proposal.to(device), weights=weights),
                 f"decode_boxes of {n} {dtype} offsets", "centre = dx / wx * Pw + Px, width = Pw exp(dw / ww), "
                 "then corners = centre -/+ width / 2", atol=1e-4, rtol=1e-5)


@pytest.mark.function("decode_boxes")
@pytest.mark.points(1)
def test_decode_boxes_undoes_encode(student, reference, device):
    truth, proposal = pairs(generator(4), 30)
    targets = reference.encode_boxes(truth, proposal, weights=(10.0, 10.0, 5.0, 5.0))
    expect_close(student.decode_boxes(targets.to(device), proposal.to(device), weights=(10.0, 10.0, 5.0, 5.0)),
                 truth.to(device), "boxes decoded from their own targets",
                 "decode_boxes(encode_boxes(G, P), P) must give G back: divide by the weights, use centres",
                 atol=1e-8)


@pytest.mark.function("decode_boxes")
@pytest.mark.points(1)
def test_decode_boxes_clips_large_sizes_only(student, reference, device):
    _, proposal = pairs(generator(5), 8)
    deltas = torch.tensor([[0.0, 0.0, 9.0, -9.0], [0.5, -0.5, 800.0, 4.5]] * 4, dtype=torch.float64)
    got = student.decode_boxes(deltas.to(device), proposal.to(device))
    expect(isinstance(got, torch.Tensor) and bool(torch.isfinite(got).all()),
           "huge dw or dh must not make the boxes infinite: clip dw and dh at `clip` before exp")
    expect_close(got, reference.decode_boxes(deltas.to(device), proposal.to(device)), "decoded boxes",
                 "dw and dh are clipped from above only (min(dw, clip)); large negative values shrink the box",
                 atol=1e-6)


@pytest.mark.function("decode_boxes")
@pytest.mark.points(1)
def test_decode_boxes_weights_dtype_and_empty(student, reference, device):
    g = generator(6)
    _, proposal = pairs(g, 7, torch.float32)
    deltas = torch.randn(7, 4, generator=g, dtype=torch.float64)
    expect_close(student.decode_boxes(deltas.to(device), proposal.to(device), weights=(2.0, 3.0, 4.0, 0.5)),
                 reference.decode_boxes(deltas.to(device), proposal.to(device), weights=(2.0, 3.0, 4.0, 0.5)),
                 "float64 offsets on float32 proposals with weights (2, 3, 4, 0.5)",
                 "divide each offset by its weight; the result has the dtype of deltas", atol=1e-6)
    expect_unchanged(student, "decode_boxes")
    empty = torch.zeros(0, 4, device=device)
    expect_tensor_like(student.decode_boxes(empty, empty), reference.decode_boxes(empty, empty),
                       "decode_boxes of no offsets")


# warp_region ----------------------------------------------------------------------------------

def image_and_box(seed, inside=True, fractional=True, dtype=torch.float32):
    g = generator(seed)
    height, width = int(torch.randint(8, 40, (1,), generator=g)), int(torch.randint(8, 40, (1,), generator=g))
    image = torch.rand(3, height, width, generator=g, dtype=torch.float64).to(dtype)
    low = torch.tensor([width, height], dtype=torch.float64)
    if inside:
        a = torch.rand(2, generator=g, dtype=torch.float64) * low * 0.6
        b = a + 1 + torch.rand(2, generator=g, dtype=torch.float64) * (low - a - 1)
    else:
        a = (torch.rand(2, generator=g, dtype=torch.float64) - 0.5) * low
        b = a + 2 + torch.rand(2, generator=g, dtype=torch.float64) * low
    box = torch.cat([a, b])
    return image, (box if fractional else box.round()).to(dtype)


@pytest.mark.function("warp_region")
@pytest.mark.points(1)
@GRADING
@given(st.integers(0, 2**31 - 1), st.sampled_from([4, (5, 9), (16, 7)]))
def test_warp_region_of_whole_pixel_boxes(student, reference, device, seed, size):
    image, box = image_and_box(seed, inside=True, fractional=False)
    expect_close(student.warp_region(image.to(device), box.to(device), size),
                 reference.warp_region(image.to(device), box.to(device), size),
                 "a warped region", "sample at x = x1 + (c + 0.5) (x2 - x1) / w - 0.5 (pixel centres) and "
                                    "interpolate the 4 pixels around it", atol=1e-5)


@pytest.mark.function("warp_region")
@pytest.mark.points(1)
def test_warp_region_of_fractional_boxes(student, reference, device):
    for seed in range(5):
        image, box = image_and_box(100 + seed, inside=True, fractional=True)
        expect_close(student.warp_region(image.to(device), box.to(device), (6, 8)),
                     reference.warp_region(image.to(device), box.to(device), (6, 8)),
                     "a region of a box with fractional corners",
                     "do not round the box to whole pixels: sample at fractional positions and interpolate",
                     atol=1e-5)


@pytest.mark.function("warp_region")
@pytest.mark.points(1)
def test_warp_region_of_boxes_outside_the_image(student, reference, device):
    for seed in range(5):
        image, box = image_and_box(200 + seed, inside=False)
        expect_close(student.warp_region(image.to(device), box.to(device), (7, 5)),
                     reference.warp_region(image.to(device), box.to(device), (7, 5)),
                     "a region of a box that sticks out of the image",
                     "clamp sample coordinates to [0, W - 1] and [0, H - 1] first (the border is repeated)",
                     atol=1e-5)
    expect_unchanged(student, "warp_region")


@pytest.mark.function("warp_region")
@pytest.mark.points(1)
def test_warp_region_sizes_dtypes_and_speed(student, reference, device):
    image, box = image_and_box(300, dtype=torch.float64)
    expect_close(student.warp_region(image.to(device), box.to(device), (3, 11)),
                 reference.warp_region(image.to(device), box.to(device), (3, 11)),
                 "a float64 region of size (3, 11)", "size is (h, w); the result keeps the image's dtype",
                 atol=1e-9)
    def large(g):
        corner = torch.rand(2, generator=g, dtype=torch.float64) * 20
        box = torch.cat([corner, corner + torch.tensor([280.0, 200.0], dtype=torch.float64)]).float()
        return torch.rand(3, 240, 320, generator=g).to(device), box.to(device), 224

    expect_fast(student, reference, "warp_region", large, factor=20, floor=0.05, seed=301,
                hint="compute all output pixels at once with index tensors, not in a loop over pixels")


# fit_box_regressor ----------------------------------------------------------------------------

def regression_data(seed, n=80, d=6, k=4, offset=0.0, dtype=torch.float64):
    g = generator(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + offset
    w = torch.randn(d, k, generator=g, dtype=torch.float64)
    t = x @ w + torch.randn(k, generator=g, dtype=torch.float64) * 3 + 0.3 * torch.randn(n, k, generator=g,
                                                                                            dtype=torch.float64)
    return x.to(dtype), t.to(dtype)


def fitted(proxy, x, t, lam, what):
    got = proxy.fit_box_regressor(x, t, lam)
    expect(isinstance(got, tuple) and len(got) == 2, "fit_box_regressor must return a pair (weight, bias)")
    return got


@pytest.mark.function("fit_box_regressor")
@pytest.mark.points(1)
def test_fit_box_regressor_matches_ridge_on_random_data(student, reference, device):
    for seed, lam in ((1, 0.1), (2, 10.0), (3, 1000.0)):
        x, t = (v.to(device) for v in regression_data(seed))
        (w, b), (rw, rb) = fitted(student, x, t, lam, ""), reference.fit_box_regressor(x, t, lam)
        expect_close(w, rw, "the weights", "minimise sum_i |t_i - W^T phi_i - b|^2 + lam |W|^2 in closed form",
                     atol=1e-7, rtol=1e-6)
        expect_close(b, rb, "the bias", "b = mean(t) - mean(phi) W", atol=1e-7, rtol=1e-6)


@pytest.mark.function("fit_box_regressor")
@pytest.mark.points(1)
def test_fit_box_regressor_leaves_the_bias_unregularised(student, reference, device):
    x, t = (v.to(device) for v in regression_data(4, offset=20.0))
    (w, b), (rw, rb) = fitted(student, x, t, 50.0, ""), reference.fit_box_regressor(x, t, 50.0)
    expect(isinstance(b, torch.Tensor) and float(b.abs().max()) > 1e-3,
           "the bias must be fitted: with targets that are not 0 on average, b = mean(t) - mean(phi) W is not 0")
    expect_close(b, rb, "the bias for features far from 0", "the bias is not regularised: centre the features "
                 "and targets (or leave the bias's entry of the penalty at 0)", atol=1e-6, rtol=1e-6)
    expect_close(w, rw, "the weights for features far from 0", "only the weights are regularised",
                 atol=1e-6, rtol=1e-6)


@pytest.mark.function("fit_box_regressor")
@pytest.mark.points(1)
def test_fit_box_regressor_penalty_is_lambda_times_the_sum(student, reference, device):
    x, t = (v.to(device) for v in regression_data(5, n=200))
    (w, _), (rw, _) = fitted(student, x, t, 30.0, ""), reference.fit_box_regressor(x, t, 30.0)
    expect_close(w, rw, "the weights with lam = 30 and 200 examples",
                 "the loss is a sum over examples (not a mean) plus lam |W|^2: solve (Xc^T Xc + lam I) W = Xc^T Tc",
                 atol=1e-7, rtol=1e-6)
    x0, t0 = (v.to(device) for v in regression_data(6))
    (w0, _), (rw0, _) = fitted(student, x0, t0, 0.0, ""), reference.fit_box_regressor(x0, t0, 0.0)
    expect_close(w0, rw0, "the weights with lam = 0", "with lam = 0 the fit is ordinary least squares",
                 atol=1e-7, rtol=1e-6)


@pytest.mark.function("fit_box_regressor")
@pytest.mark.points(1)
def test_fit_box_regressor_shapes_dtypes_and_bad_lambda(student, reference, device):
    x, t = (v.to(device) for v in regression_data(7, n=40, d=3, k=2, dtype=torch.float32))
    (w, b), (rw, rb) = fitted(student, noncontiguous(x), t, 1.0, ""), reference.fit_box_regressor(x, t, 1.0)
    expect_unchanged(student, "fit_box_regressor")
    expect_close(w, rw, "float32 weights for 3 features and 2 targets", "weight is [D, K] in the features' dtype",
                 atol=1e-4, rtol=1e-4)
    expect_close(b, rb, "float32 bias for 2 targets", "bias is [K] in the features' dtype", atol=1e-4, rtol=1e-4)
    try:
        student.fit_box_regressor(x, t, -1.0)
        raised = False
    except AssertionError as failure:
        raised = "ValueError" in str(failure)
    expect(raised, "a negative lam must raise a ValueError")


# train_linear_svm -----------------------------------------------------------------------------

def svm_data(seed, n, d, noise=0.0, offset=0.0, positive=0.5, margin=0.0):
    """Points in d dimensions labelled by a random hyperplane (a fraction `noise` flipped)."""
    g = generator(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    normal = torch.randn(d, generator=g, dtype=torch.float64)
    score = x @ normal / normal.norm()
    threshold = torch.quantile(score, 1 - positive)
    keep = (score - threshold).abs() >= margin
    x, score = x[keep], score[keep]
    labels = (score > threshold).long()
    flip = torch.rand(len(labels), generator=g) < noise
    labels[flip] = 1 - labels[flip]
    return x + offset, labels


def objective(weight, bias, x, labels, lam):
    y = labels.double() * 2 - 1
    return (0.5 * lam * weight.double() @ weight.double()
            + (1 - y * (x @ weight.double() + bias.double())).clamp(min=0).mean()).item()


def trained(proxy, x, labels, lam):
    got = proxy.call("train_linear_svm", x, labels, lam, failure="train_linear_svm failed ({error}); it must "
                     "finish within the time limit on a few thousand examples")
    expect(isinstance(got, tuple) and len(got) == 2 and all(isinstance(v, torch.Tensor) for v in got),
           "train_linear_svm must return a pair of tensors (weight, bias)")
    weight, bias = got
    expect(weight.shape == (x.shape[1],) and bias.dim() == 0,
           f"weight must be [D] and bias a 0-dimensional tensor, not {tuple(weight.shape)} and {tuple(bias.shape)}")
    return weight.cpu(), bias.cpu()


@pytest.mark.function("train_linear_svm")
@pytest.mark.points(1)
def test_train_linear_svm_reaches_the_minimum_objective(student, reference, device):
    for seed, n, d, noise, lam in ((1, 300, 10, 0.05, 0.01), (2, 500, 30, 0.15, 0.1), (3, 200, 5, 0.0, 0.01)):
        x, labels = svm_data(seed, n, d, noise)
        best = objective(*trained(reference, x.to(device), labels.to(device), lam), x, labels, lam)
        reached = objective(*trained(student, x.to(device), labels.to(device), lam), x, labels, lam)
        expect(reached <= best * 1.02 + 1e-3,
               f"the hinge objective J reached is {reached:.4f} where {best:.4f} is possible (lam = {lam}): "
               "minimise lam / 2 |w|^2 + mean(max(0, 1 - y (w.x + b))) with y = 2 labels - 1, for long enough")


@pytest.mark.function("train_linear_svm")
@pytest.mark.points(1)
def test_train_linear_svm_separates_separable_data(student, device):
    x, labels = svm_data(4, 800, 8, margin=0.3)
    weight, bias = trained(student, x[:400].to(device), labels[:400].to(device), 0.01)
    accuracy = (((x[400:] @ weight.double() + bias.double()) > 0).long() == labels[400:]).double().mean().item()
    expect(accuracy >= 0.97, f"on separable data the SVM classifies only {accuracy:.0%} of held-out points "
                             "correctly: w.x + b > 0 must mean label 1")


@pytest.mark.function("train_linear_svm")
@pytest.mark.points(1)
def test_train_linear_svm_on_nearly_separable_data(student, reference, device):
    x, labels = svm_data(5, 2000, 128, noise=0.05)
    ours = trained(reference, x[:1500].to(device), labels[:1500].to(device), 0.01)
    theirs = trained(student, x[:1500].to(device), labels[:1500].to(device), 0.01)

    def accuracy(weight, bias):
        return (((x[1500:] @ weight.double() + bias.double()) > 0).long() == labels[1500:]).double().mean().item()

    expect(accuracy(*theirs) >= accuracy(*ours) - 0.03,
           f"held-out accuracy {accuracy(*theirs):.0%} where the SVM reaches {accuracy(*ours):.0%} on 1500 examples "
           "of 128 features with 5% wrong labels")


@pytest.mark.function("train_linear_svm")
@pytest.mark.points(1)
def test_train_linear_svm_learns_a_bias(student, reference, device):
    x, labels = svm_data(6, 400, 4, noise=0.02, offset=6.0, positive=0.2)
    lam = 0.01
    best = objective(*trained(reference, x.to(device), labels.to(device), lam), x, labels, lam)
    weight, bias = trained(student, x.to(device), labels.bool().to(device), lam)
    expect_unchanged(student, "train_linear_svm")
    reached = objective(weight, bias, x, labels, lam)
    expect(reached <= best * 1.02 + 1e-3,
           f"with features far from 0, 20% positives and bool labels, J reached is {reached:.4f} where {best:.4f} "
           "is possible: the bias must be learned and not penalised, and bool labels are 0/1 too")
