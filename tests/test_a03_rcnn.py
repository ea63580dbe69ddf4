"""Proofs for a03-rcnn: the reference agrees with independent oracles (torchvision's BoxCoder,
grid_sample and roi_align, numpy's least squares, the SVM's dual solved by scipy); plausible wrong
answers lose points on the test that names the mistake; right answers written differently earn
full marks."""
import math

import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder

from coursetools.reference import load_reference
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together

ASSIGNMENT = "a03-rcnn"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=60, deadline=None, database=None)
WEIGHTS = st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 4.0, 0.5)])


def boxes(seed, n, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * 100
    size = torch.rand(n, 2, generator=g, dtype=torch.float64) * 50 + 0.5
    return torch.cat([corner, corner + size], 1).to(dtype)


# The reference against independent oracles -----------------------------------------------------

@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 40), WEIGHTS, st.sampled_from([torch.float32, torch.float64]))
def test_box_coder_equals_torchvision(seed, n, weights, dtype):
    coder = BoxCoder(weights)
    truth, proposal = boxes(seed, n, dtype), boxes(seed + 1, n, dtype)
    got, want = REF.encode_boxes(truth, proposal, weights=weights), coder.encode_single(truth, proposal)
    assert got.dtype == want.dtype and torch.allclose(got, want, atol=1e-6, rtol=1e-6)
    deltas = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype) * 4
    got, want = REF.decode_boxes(deltas, proposal, weights=weights), coder.decode_single(deltas, proposal)
    assert got.dtype == want.dtype and torch.allclose(got, want, atol=1e-4, rtol=1e-6)


def test_slides_examples_of_regression_targets():
    proposal = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 3)
    truth = torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 0.0, 10.0, 8.0],
                          [4 - 4 * math.exp(-0.125), 0.0, 4 + 4 * math.exp(-0.125), 8.0]])
    want = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.25, 0.0, 0.0, 0.0], [0.0, 0.0, -0.125, 0.0]])
    assert torch.allclose(REF.encode_boxes(truth, proposal), want, atol=1e-6)


def grid_sample_oracle(image, box, size):
    """warp_region's definition through grid_sample (border padding clamps the coordinates)."""
    h, w = (size, size) if isinstance(size, int) else size
    _, height, width = image.shape
    xs = box[0] + (torch.arange(w, dtype=torch.float64) + 0.5) * (box[2] - box[0]) / w - 0.5
    ys = box[1] + (torch.arange(h, dtype=torch.float64) + 0.5) * (box[3] - box[1]) / h - 0.5
    gy, gx = torch.meshgrid((2 * ys + 1) / height - 1, (2 * xs + 1) / width - 1, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].to(image.dtype)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


@PROPERTY
@given(st.integers(0, 10**6), st.sampled_from([3, (4, 9), (11, 2)]), st.booleans())
def test_warp_region_equals_grid_sample_and_roi_align(seed, size, inside):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 13, 17, generator=g, dtype=torch.float64)
    scale = torch.tensor([17.0, 13.0], dtype=torch.float64)
    a = torch.rand(2, generator=g, dtype=torch.float64) * scale * (0.6 if inside else 1.2) - (0 if inside else 3)
    b = a + 0.5 + torch.rand(2, generator=g, dtype=torch.float64) * ((scale - a - 0.5) if inside else scale)
    box = torch.cat([a, b])
    got = REF.warp_region(image, box, size)
    assert torch.allclose(got, grid_sample_oracle(image, box, size), atol=1e-10)
    if inside:  # roi_align samples the same points and only differs from clamping far outside
        aligned = torchvision.ops.roi_align(image[None], [box[None]], size, 1.0, sampling_ratio=1, aligned=True)[0]
        assert torch.allclose(got, aligned, atol=1e-10)


@pytest.mark.parametrize("lam", [0.0, 0.5, 100.0])
def test_box_regressor_equals_least_squares_on_the_augmented_system(lam):
    g = np.random.default_rng(1)
    x, t = g.normal(size=(120, 7)) + 4, g.normal(size=(120, 4))
    a = np.vstack([np.hstack([x, np.ones((120, 1))]), np.hstack([math.sqrt(lam) * np.eye(7), np.zeros((7, 1))])])
    solution = np.linalg.lstsq(a, np.vstack([t, np.zeros((7, 4))]), rcond=None)[0]
    weight, bias = REF.fit_box_regressor(torch.from_numpy(x), torch.from_numpy(t), lam)
    assert np.allclose(weight.numpy(), solution[:7], atol=1e-10) and np.allclose(bias.numpy(), solution[7], atol=1e-10)


def svm_dual_optimum(x, y, lam):
    """The SVM's optimum objective from its dual, max sum(a) - |sum a_i y_i x_i|^2 / (2 lam) with
    0 <= a_i <= 1/N and sum a_i y_i = 0, solved by scipy's SLSQP."""
    n = len(y)
    k = y[:, None] * x
    result = scipy.optimize.minimize(
        lambda a: -(a.sum() - 0.5 / lam * np.sum((k.T @ a) ** 2)), np.zeros(n),
        jac=lambda a: -(1 - k @ (k.T @ a) / lam), method="SLSQP", bounds=[(0, 1 / n)] * n,
        constraints=[{"type": "eq", "fun": lambda a: a @ y, "jac": lambda a: y}],
        options={"maxiter": 1000, "ftol": 1e-14})
    return -result.fun


@pytest.mark.parametrize("seed,lam,noise", [(0, 0.01, 0.0), (1, 0.01, 0.1), (2, 0.1, 0.05), (3, 0.001, 0.0)])
def test_svm_reaches_the_dual_optimum(seed, lam, noise):
    g = np.random.default_rng(seed)
    x = g.normal(size=(150, 5)) * 3 + 2
    labels = (x @ g.normal(size=5) > 0.5).astype(int)
    flip = g.random(150) < noise
    labels[flip] = 1 - labels[flip]
    y = 2.0 * labels - 1
    weight, bias = REF.train_linear_svm(torch.from_numpy(x), torch.from_numpy(labels), lam)
    primal = 0.5 * lam * weight.numpy() @ weight.numpy() + np.maximum(0, 1 - y * (x @ weight.numpy() + bias.item())).mean()
    optimum = svm_dual_optimum(x, y, lam)
    assert optimum - 1e-6 <= primal <= optimum * 1.001 + 1e-5  # weak duality below, near-optimal above


# Wrong answers lose points where their mistake is named -----------------------------------------

ENCODE = "def encode_boxes(reference_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0)):\n"
DECODE = "def decode_boxes(deltas, proposals, weights=(1.0, 1.0, 1.0, 1.0), clip=BBOX_CLIP):\n"
CENTRES = """
        pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
        px, py = proposals[:, 0] + pw / 2, proposals[:, 1] + ph / 2"""
WRONG = {
    # encode_boxes
    "targets from corners": ("encode-boxes", ENCODE + """
        wx, wy, ww, wh = weights
        pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
        gw, gh = reference_boxes[:, 2] - reference_boxes[:, 0], reference_boxes[:, 3] - reference_boxes[:, 1]
        return torch.stack([wx * (reference_boxes[:, 0] - proposals[:, 0]) / pw,
                            wy * (reference_boxes[:, 1] - proposals[:, 1]) / ph,
                            ww * torch.log(gw / pw), wh * torch.log(gh / ph)], 1)
        """, "compare the boxes' centres"),
    "size change without the log": ("encode-boxes", ENCODE + """
        wx, wy, ww, wh = weights
        pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
        gw, gh = reference_boxes[:, 2] - reference_boxes[:, 0], reference_boxes[:, 3] - reference_boxes[:, 1]
        dx = (reference_boxes[:, 0] + gw / 2) - (proposals[:, 0] + pw / 2)
        dy = (reference_boxes[:, 1] + gh / 2) - (proposals[:, 1] + ph / 2)
        return torch.stack([wx * dx / pw, wy * dy / ph, ww * (gw - pw) / pw, wh * (gh - ph) / ph], 1)
        """, "a log of the ratio of sizes"),
    "weights ignored": ("encode-boxes", ENCODE + """
        pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
        gw, gh = reference_boxes[:, 2] - reference_boxes[:, 0], reference_boxes[:, 3] - reference_boxes[:, 1]
        dx = (reference_boxes[:, 0] + gw / 2) - (proposals[:, 0] + pw / 2)
        dy = (reference_boxes[:, 1] + gh / 2) - (proposals[:, 1] + ph / 2)
        return torch.stack([dx / pw, dy / ph, torch.log(gw / pw), torch.log(gh / ph)], 1)
        """, "multiplied by its weight"),
    "offsets divided by the ground truth's size": ("encode-boxes", ENCODE + """
        wx, wy, ww, wh = weights
        pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
        gw, gh = reference_boxes[:, 2] - reference_boxes[:, 0], reference_boxes[:, 3] - reference_boxes[:, 1]
        dx = (reference_boxes[:, 0] + gw / 2) - (proposals[:, 0] + pw / 2)
        dy = (reference_boxes[:, 1] + gh / 2) - (proposals[:, 1] + ph / 2)
        return torch.stack([wx * dx / gw, wy * dy / gh, ww * torch.log(gw / pw), wh * torch.log(gh / ph)], 1)
        """, "divide by the proposal's width"),
    # decode_boxes
    "sizes not clipped": ("decode-boxes", DECODE + CENTRES + """
        wx, wy, ww, wh = weights
        cx, cy = deltas[:, 0] / wx * pw + px, deltas[:, 1] / wy * ph + py
        w, h = torch.exp(deltas[:, 2] / ww) * pw, torch.exp(deltas[:, 3] / wh) * ph
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        """, "clip dw and dh at `clip` before exp"),
    "sizes clipped on both sides": ("decode-boxes", DECODE + CENTRES + """
        wx, wy, ww, wh = weights
        cx, cy = deltas[:, 0] / wx * pw + px, deltas[:, 1] / wy * ph + py
        w = torch.exp((deltas[:, 2] / ww).clamp(-clip, clip)) * pw
        h = torch.exp((deltas[:, 3] / wh).clamp(-clip, clip)) * ph
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        """, "clipped from above only"),
    "weights multiplied instead of divided": ("decode-boxes", DECODE + CENTRES + """
        wx, wy, ww, wh = weights
        cx, cy = deltas[:, 0] * wx * pw + px, deltas[:, 1] * wy * ph + py
        w = torch.exp((deltas[:, 2] * ww).clamp(max=clip)) * pw
        h = torch.exp((deltas[:, 3] * wh).clamp(max=clip)) * ph
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        """, "divide by the weights"),
    "offsets applied to the corner": ("decode-boxes", DECODE + """
        wx, wy, ww, wh = weights
        pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
        x1, y1 = deltas[:, 0] / wx * pw + proposals[:, 0], deltas[:, 1] / wy * ph + proposals[:, 1]
        w = torch.exp((deltas[:, 2] / ww).clamp(max=clip)) * pw
        h = torch.exp((deltas[:, 3] / wh).clamp(max=clip)) * ph
        return torch.stack([x1, y1, x1 + w, y1 + h], 1)
        """, "use centres"),
    # warp_region
    "box rounded, then resized": ("warp-region", """
        def warp_region(image, box, size):
            h, w = (size, size) if isinstance(size, int) else size
            x1, y1, x2, y2 = [int(round(float(v))) for v in box]
            crop = image[:, max(y1, 0):max(y2, y1 + 1), max(x1, 0):max(x2, x1 + 1)]
            return torch.nn.functional.interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        """, "do not round the box"),
    "samples without the half-pixel shift": ("warp-region", """
        def warp_region(image, box, size):
            h, w = (size, size) if isinstance(size, int) else size
            _, H, W = image.shape
            box = box.double()
            xs = (box[0] + (torch.arange(w, device=image.device) + 0.5) * (box[2] - box[0]) / w).clamp(0, W - 1)
            ys = (box[1] + (torch.arange(h, device=image.device) + 0.5) * (box[3] - box[1]) / h).clamp(0, H - 1)
            x0, y0 = xs.floor().long(), ys.floor().long()
            x1, y1 = (x0 + 1).clamp(max=W - 1), (y0 + 1).clamp(max=H - 1)
            fx, fy = (xs - x0).to(image.dtype), (ys - y0).to(image.dtype)[:, None]
            top = image[:, y0][:, :, x0] * (1 - fx) + image[:, y0][:, :, x1] * fx
            bottom = image[:, y1][:, :, x0] * (1 - fx) + image[:, y1][:, :, x1] * fx
            return top * (1 - fy) + bottom * fy
        """, "pixel centres"),
    "zeros outside the image": ("warp-region", """
        def warp_region(image, box, size):
            h, w = (size, size) if isinstance(size, int) else size
            _, H, W = image.shape
            box = box.double()
            xs = box[0] + (torch.arange(w, device=image.device) + 0.5) * (box[2] - box[0]) / w - 0.5
            ys = box[1] + (torch.arange(h, device=image.device) + 0.5) * (box[3] - box[1]) / h - 0.5
            padded = torch.nn.functional.pad(image, (1, 1, 1, 1))
            xs, ys = (xs + 1).clamp(0, W + 1), (ys + 1).clamp(0, H + 1)
            x0, y0 = xs.floor().long(), ys.floor().long()
            x1, y1 = (x0 + 1).clamp(max=W + 1), (y0 + 1).clamp(max=H + 1)
            fx, fy = (xs - x0).to(image.dtype), (ys - y0).to(image.dtype)[:, None]
            top = padded[:, y0][:, :, x0] * (1 - fx) + padded[:, y0][:, :, x1] * fx
            bottom = padded[:, y1][:, :, x0] * (1 - fx) + padded[:, y1][:, :, x1] * fx
            return top * (1 - fy) + bottom * fy
        """, "clamp sample coordinates"),
    "a loop over output pixels": ("warp-region", """
        def warp_region(image, box, size):
            h, w = (size, size) if isinstance(size, int) else size
            _, H, W = image.shape
            x1, y1, x2, y2 = [float(v) for v in box]
            out = torch.zeros(image.shape[0], h, w, dtype=image.dtype, device=image.device)
            for r in range(h):
                for c in range(w):
                    x = min(max(x1 + (c + 0.5) * (x2 - x1) / w - 0.5, 0), W - 1)
                    y = min(max(y1 + (r + 0.5) * (y2 - y1) / h - 0.5, 0), H - 1)
                    j, i = int(math.floor(x)), int(math.floor(y))
                    j1, i1 = min(j + 1, W - 1), min(i + 1, H - 1)
                    fx, fy = x - j, y - i
                    out[:, r, c] = ((1 - fy) * ((1 - fx) * image[:, i, j] + fx * image[:, i, j1])
                                    + fy * ((1 - fx) * image[:, i1, j] + fx * image[:, i1, j1]))
            return out
        """, "too slow"),
    # fit_box_regressor
    "bias regularised too": ("fit-box-regressor", """
        def fit_box_regressor(features, targets, lam):
            if lam < 0:
                raise ValueError("lam")
            x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64, device=features.device)], 1)
            solved = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1], dtype=torch.float64, device=x.device),
                                        x.T @ targets.double())
            return solved[:-1].to(features.dtype), solved[-1].to(features.dtype)
        """, "the bias is not regularised"),
    "penalty scaled by the number of examples": ("fit-box-regressor", """
        def fit_box_regressor(features, targets, lam):
            if lam < 0:
                raise ValueError("lam")
            x, t = features.double(), targets.double()
            xm, tm = x.mean(0), t.mean(0)
            xc, tc = x - xm, t - tm
            w = torch.linalg.solve(xc.T @ xc + lam * len(x) * torch.eye(x.shape[1], dtype=torch.float64, device=x.device),
                                   xc.T @ tc)
            return w.to(features.dtype), (tm - xm @ w).to(features.dtype)
        """, "a sum over examples (not a mean)"),
    "no bias at all": ("fit-box-regressor", """
        def fit_box_regressor(features, targets, lam):
            if lam < 0:
                raise ValueError("lam")
            x, t = features.double(), targets.double()
            w = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1], dtype=torch.float64, device=x.device), x.T @ t)
            return w.to(features.dtype), torch.zeros(t.shape[1], dtype=features.dtype, device=features.device)
        """, "the bias must be fitted"),
    "least squares from the library": ("fit-box-regressor", """
        def fit_box_regressor(features, targets, lam):
            if lam < 0:
                raise ValueError("lam")
            x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64, device=features.device)], 1)
            penalty = math.sqrt(lam) * torch.eye(x.shape[1], dtype=torch.float64, device=x.device)[:-1]
            a = torch.cat([x, penalty])
            b = torch.cat([targets.double(), torch.zeros(len(penalty), targets.shape[1], dtype=torch.float64, device=x.device)])
            solved = torch.linalg.lstsq(a, b).solution
            return solved[:-1].to(features.dtype), solved[-1].to(features.dtype)
        """, "does not allow"),
    # train_linear_svm
    "labels 0 and 1 used as the signs": ("train-linear-svm", """
        def train_linear_svm(features, labels, lam=0.01):
            x, y = features.double(), labels.double()
            w = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device, requires_grad=True)
            b = torch.zeros((), dtype=torch.float64, device=x.device, requires_grad=True)
            opt = torch.optim.Adam([w, b], lr=0.05)
            for _ in range(500):
                opt.zero_grad()
                loss = 0.5 * lam * w @ w + (1 - y * (x @ w + b)).clamp(min=0).mean()
                loss.backward()
                opt.step()
            return w.detach().to(features.dtype), b.detach().to(features.dtype)
        """, "y = 2 labels - 1"),
    "a few steps of plain gradient descent": ("train-linear-svm", """
        def train_linear_svm(features, labels, lam=0.01):
            x, y = features.double(), labels.double() * 2 - 1
            w = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device, requires_grad=True)
            b = torch.zeros((), dtype=torch.float64, device=x.device, requires_grad=True)
            opt = torch.optim.SGD([w, b], lr=0.01)
            for _ in range(20):
                opt.zero_grad()
                loss = 0.5 * lam * w @ w + (1 - y * (x @ w + b)).clamp(min=0).mean()
                loss.backward()
                opt.step()
            return w.detach().to(features.dtype), b.detach().to(features.dtype)
        """, "for long enough"),
    "bias penalised": ("train-linear-svm", """
        def train_linear_svm(features, labels, lam=0.01):
            x, y = features.double(), labels.double() * 2 - 1
            p = torch.zeros(x.shape[1] + 1, dtype=torch.float64, device=x.device, requires_grad=True)
            opt = torch.optim.Adam([p], lr=0.1)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 1500)
            for _ in range(1500):
                opt.zero_grad()
                loss = 0.5 * lam * p @ p + (1 - y * (x @ p[:-1] + p[-1])).clamp(min=0).mean()
                loss.backward()
                opt.step()
                sched.step()
            return p[:-1].detach().to(features.dtype), p[-1].detach().to(features.dtype)
        """, "the bias must be learned and not penalised"),
    "solved by scipy": ("train-linear-svm", """
        def train_linear_svm(features, labels, lam=0.01):
            import scipy.optimize
            x, y = features.double().cpu().numpy(), labels.double().cpu().numpy() * 2 - 1
            f = lambda p: 0.5 * lam * p[:-1] @ p[:-1] + (1 - y * (x @ p[:-1] + p[-1])).clip(min=0).mean()
            p = torch.from_numpy(scipy.optimize.minimize(f, [0.0] * (x.shape[1] + 1), method="Powell").x)
            return p[:-1].to(features.dtype), p[-1].to(features.dtype)
        """, "does not allow"),
    # Any assignment: the course's helper package is not allowed in a graded function.
    "ridge regression from chapter 3's helpers": ("fit-box-regressor", """
        def fit_box_regressor(features, targets, lam):
            if lam < 0:
                raise ValueError("lam must be >= 0")
            from odcourse.rcnn import ridge_lstsq
            return ridge_lstsq(features, targets, lam)
        """, "uses odcourse"),
}

MISTAKES = {name: (grade_id, code, phrase, ()) for name, (grade_id, code, phrase) in WRONG.items()}
SLOW = ["a loop over output pixels"]

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW)


DIFFERENT_BUT_RIGHT = {
    "encode-boxes": """
        def encode_boxes(reference_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
            w = torch.tensor(weights, dtype=reference_boxes.dtype, device=reference_boxes.device)
            p = proposals.to(reference_boxes.dtype)
            p_size, g_size = p[:, 2:] - p[:, :2], reference_boxes[:, 2:] - reference_boxes[:, :2]
            p_mid, g_mid = p[:, :2] + p_size / 2, reference_boxes[:, :2] + g_size / 2
            return torch.cat([(g_mid - p_mid) / p_size, (g_size / p_size).log()], dim=1) * w
        """,
    "decode-boxes": """
        def decode_boxes(deltas, proposals, weights=(1.0, 1.0, 1.0, 1.0), clip=BBOX_CLIP):
            d = deltas / torch.tensor(weights, dtype=deltas.dtype, device=deltas.device)
            p = proposals.to(deltas.dtype)
            size = p[:, 2:] - p[:, :2]
            middle = p[:, :2] + 0.5 * size + d[:, :2] * size
            half = 0.5 * size * torch.exp(torch.minimum(d[:, 2:], torch.tensor(clip, dtype=d.dtype, device=d.device)))
            return torch.cat([middle - half, middle + half], dim=1)
        """,
    "warp-region": """
        def warp_region(image, box, size):
            h, w = (size, size) if isinstance(size, int) else size
            _, H, W = image.shape
            def interpolation_matrix(start, end, count, length):
                # row k holds the weights of the input pixels that output k mixes
                pos = (start + (torch.arange(count, dtype=torch.float64, device=image.device) + 0.5) * (end - start) / count - 0.5).clamp(0, length - 1)
                pixels = torch.arange(length, dtype=torch.float64, device=image.device)
                return (1 - (pos[:, None] - pixels[None, :]).abs()).clamp(min=0)
            b = box.double()
            rows = interpolation_matrix(b[1], b[3], h, H)
            cols = interpolation_matrix(b[0], b[2], w, W)
            return (rows @ image.double() @ cols.T).to(image.dtype)
        """,
    "fit-box-regressor": """
        def fit_box_regressor(features, targets, lam):
            if lam < 0:
                raise ValueError("lam must not be negative")
            x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64, device=features.device)], 1)
            penalty = torch.diag(torch.tensor([float(lam)] * features.shape[1] + [0.0], dtype=torch.float64, device=x.device))
            solved = torch.linalg.solve(x.T @ x + penalty, x.T @ targets.double())
            return solved[:-1].to(features.dtype), solved[-1].to(features.dtype)
        """,
    "train-linear-svm": """
        def train_linear_svm(features, labels, lam=0.01):
            x, y = features.double(), labels.double() * 2 - 1
            w = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device, requires_grad=True)
            b = torch.zeros((), dtype=torch.float64, device=x.device, requires_grad=True)
            steps = 2000
            opt = torch.optim.Adam([w, b], lr=0.1)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
            for _ in range(steps):
                opt.zero_grad()
                loss = 0.5 * lam * w @ w + torch.relu(1 - y * (x @ w + b)).mean()
                loss.backward()
                opt.step()
                sched.step()
            return w.detach().to(features.dtype), b.detach().to(features.dtype)
        """,
}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
