"""Hidden suite for a06-roi-align: bilinear interpolation, ROI Align (forward and gradient), mask
targets, the Mask R-CNN mask loss, pasting masks into the image."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.support import (GRADING, expect_close, expect_fast, expect_tensor_like, expect_unchanged,
                                       generator)

FUNCTIONS = {"bilinear_interpolate": "bilinear-interpolate", "roi_align": "roi-align", "mask_targets": "mask-targets",
             "maskrcnn_loss": "maskrcnn-loss", "paste_mask": "paste-mask"}
BANNED = {
    "bilinear_interpolate": ["torchvision.ops", "torch.nn.functional.grid_sample", "torch.grid_sampler",
                             "torch.grid_sampler_2d", "aten::grid_sampler", "aten::grid_sampler_2d",
                             "aten::cudnn_grid_sampler"],
    "roi_align": ["torchvision.ops"],
    "mask_targets": ["torchvision.ops", "torchvision.models.detection.roi_heads"],
    "maskrcnn_loss": ["torchvision.ops", "torchvision.models.detection.roi_heads"],
    "paste_mask": ["torchvision.ops", "torchvision.models.detection.roi_heads"],
}


def regions(g, k, images, image_size, dtype=torch.float64, outside=0.3):
    """float[k, 5] (batch_index, x1, y1, x2, y2): some stick out, some are thin or inverted (x2 < x1)."""
    corner = torch.rand(k, 2, generator=g, dtype=torch.float64) * image_size * (1 + outside) - image_size * outside / 2
    size = torch.rand(k, 2, generator=g, dtype=torch.float64) * image_size * 0.7 - image_size * 0.05
    index = torch.randint(0, images, (k, 1), generator=g).to(torch.float64)
    return torch.cat([index, corner, corner + size], 1).to(dtype)


# bilinear_interpolate -------------------------------------------------------------------------

@pytest.mark.function("bilinear_interpolate")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 12), st.integers(1, 12), st.integers(0, 60),
       st.sampled_from([torch.float32, torch.float64]))
def test_bilinear_interpolate_of_random_points(student, reference, device, seed, c, h, w, n, dtype):
    g = generator(seed)
    x = torch.randn(c, h, w, generator=g, dtype=torch.float64).to(dtype).to(device)
    ys = (torch.rand(n, generator=g, dtype=torch.float64) * (h + 3) - 1.5).to(dtype).to(device)
    xs = (torch.rand(n, generator=g, dtype=torch.float64) * (w + 3) - 1.5).to(dtype).to(device)
    got = student.call("bilinear_interpolate", x, ys, xs,
                       failure="bilinear_interpolate failed on points inside, around and outside the map ({error}): "
                               "set negative coordinates to 0 and keep the 4 cells inside the map before indexing")
    expect_close(got, reference.bilinear_interpolate(x, ys, xs), f"bilinear_interpolate of a {h} x {w} map at {n} points",
                 "outside (y < -1, y > H, x < -1, x > W) gives 0; negative coordinates become 0; from H - 1 on the "
                 "last row is repeated; else the 4 neighbours weighted by hy hx, hy lx, ly hx, ly lx", atol=1e-5)


@pytest.mark.function("bilinear_interpolate")
@pytest.mark.points(1)
def test_bilinear_interpolate_border_rules(student, reference, device):
    x = torch.randn(2, 5, 6, generator=generator(1), dtype=torch.float64).to(device)
    ys = torch.tensor([-1.0, -0.999, -1.001, 4.0, 4.5, 5.0, 5.001, 3.999, 2.0, 2.0, 2.0, 2.0], dtype=torch.float64)
    xs = torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, -1.0, 5.5, 6.0, 6.01], dtype=torch.float64)
    expect_close(student.bilinear_interpolate(x, ys.to(device), xs.to(device)),
                 reference.bilinear_interpolate(x, ys.to(device), xs.to(device)), "values exactly at the borders",
                 "-1 and H (or W) themselves are inside; only beyond them is a point outside", atol=1e-12)


@pytest.mark.function("bilinear_interpolate")
@pytest.mark.points(1)
def test_bilinear_interpolate_shapes_gradient_and_inputs(student, reference, device):
    g = generator(2)
    x = torch.randn(3, 7, 8, generator=g, dtype=torch.float64).to(device)
    ys = (torch.rand(4, 5, generator=g, dtype=torch.float64) * 8 - 1).to(device)
    xs = (torch.rand(4, 5, generator=g, dtype=torch.float64) * 9 - 1).to(device)
    expect_close(student.bilinear_interpolate(x, ys, xs), reference.bilinear_interpolate(x, ys, xs),
                 "bilinear_interpolate at a 4 x 5 grid of points", "the result has shape [C, *y.shape]", atol=1e-12)
    expect_unchanged(student, "bilinear_interpolate")
    upstream = torch.randn(3, 4, 5, generator=g, dtype=torch.float64).to(device)
    probe = {"kind": "backward", "wrt": [0], "grad_output": upstream}
    got = student.call("bilinear_interpolate", x, ys, xs, probe=probe,
                       failure="the gradient through bilinear_interpolate could not be computed: {error}")
    want = reference.call("bilinear_interpolate", x, ys, xs, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient with respect to input",
                 "each value's gradient goes to its 4 cells with the 4 weights (and none from points outside)",
                 atol=1e-12)
    empty = torch.zeros(0, dtype=torch.float64, device=device)
    expect_tensor_like(student.bilinear_interpolate(x, empty, empty), reference.bilinear_interpolate(x, empty, empty),
                       "bilinear_interpolate at no points")


# roi_align ------------------------------------------------------------------------------------

@st.composite
def align_inputs(draw):
    """(seed, images, channels, height, width, regions, output_size, spatial_scale, sampling_ratio, aligned, dtype)."""
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 12)),
            draw(st.integers(1, 12)), draw(st.integers(0, 25)), draw(st.sampled_from([1, 2, 3, 7, (2, 3)])),
            draw(st.sampled_from([1.0, 0.5, 0.25])), draw(st.sampled_from([-1, 0, 1, 2, 3])), draw(st.booleans()),
            draw(st.sampled_from([torch.float32, torch.float64])))


def align_case(params, device):
    seed, n, c, h, w, k, size, scale, ratio, aligned, dtype = params
    g = generator(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(dtype).to(device)
    return x, regions(g, k, n, max(h, w) / scale, dtype).to(device), size, scale, ratio, aligned


@pytest.mark.function("roi_align")
@pytest.mark.points(2)
@GRADING
@given(align_inputs())
def test_roi_align_of_random_regions(student, reference, device, params):
    args = align_case(params, device)
    expect_close(student.roi_align(*args), reference.roi_align(*args),
                 f"roi_align of {len(args[1])} regions (output_size {args[2]}, spatial_scale {args[3]:g}, "
                 f"sampling_ratio {args[4]}, aligned={args[5]})",
                 "no rounding; samples at y1' + p b_h + (i + 1/2) b_h / g; g = ceil(h_r / h) for sampling_ratio <= 0; "
                 "-0.5 when aligned; w_r, h_r at least 1 only when not aligned; the mean of the bin's samples",
                 atol=1e-5, rtol=1e-5)


@pytest.mark.function("roi_align")
@pytest.mark.points(1)
def test_roi_align_adaptive_sampling_per_region(student, reference, device):
    g = generator(3)
    x = torch.randn(2, 2, 20, 20, generator=g, dtype=torch.float64).to(device)
    boxes = torch.tensor([[0, 0, 0, 3, 3], [1, 0, 0, 20, 20], [0, 2.5, 1.5, 17.25, 6.0], [1, 4, 4, 4.5, 19]],
                         dtype=torch.float64).to(device)
    for aligned in (False, True):
        expect_close(student.roi_align(x, boxes, 2, 1.0, -1, aligned), reference.roi_align(x, boxes, 2, 1.0, -1, aligned),
                     f"roi_align with sampling_ratio -1 of regions of very different sizes (aligned={aligned})",
                     "with sampling_ratio <= 0 each region has its own grid: ceil(h_r / h) by ceil(w_r / w) samples "
                     "per bin", atol=1e-10)


@pytest.mark.function("roi_align")
@pytest.mark.points(1)
@GRADING
@given(align_inputs())
def test_roi_align_gradient(student, reference, device, params):
    x, boxes, size, scale, ratio, aligned = align_case(params, device)
    x, boxes = x.double(), boxes.double()
    shape = reference.roi_align(x, boxes, size, scale, ratio, aligned).shape
    upstream = torch.randn(*shape, generator=generator(params[0] + 1), dtype=torch.float64).to(device)
    probe = {"kind": "backward", "wrt": [0], "grad_output": upstream}
    got = student.call("roi_align", x, boxes, size, scale, ratio, aligned, probe=probe,
                       failure="the gradient through roi_align could not be computed ({error}): build the output "
                               "from input with differentiable operations")
    want = reference.call("roi_align", x, boxes, size, scale, ratio, aligned, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient of roi_align with respect to input",
                 "build the output from input with differentiable operations; each sample sends its share "
                 "(1 / samples of the bin) to its 4 cells", atol=1e-10)


@pytest.mark.function("roi_align")
@pytest.mark.points(1)
def test_roi_align_empty_layout_and_inputs(student, reference, device):
    g = generator(4)
    x = torch.randn(2, 3, 10, 9, generator=g).to(device)
    boxes = regions(g, 12, 2, 10.0, torch.float32).to(device)
    layout = x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    expect_close(student.roi_align(layout, boxes, 3, 1.0, 2, True), reference.roi_align(x, boxes, 3, 1.0, 2, True),
                 "roi_align of a non-contiguous input", "do not assume a contiguous layout (reshape, not view)",
                 atol=1e-5)
    expect_unchanged(student, "roi_align")
    empty = torch.zeros(0, 5, device=device)
    expect_tensor_like(student.roi_align(x, empty, (2, 4), 1.0, -1, False),
                       reference.roi_align(x, empty, (2, 4), 1.0, -1, False), "roi_align of no regions")
    flows = student.call("roi_align", x, empty, (2, 4), 1.0, -1, False, probe={"kind": "requires_grad", "wrt": [0]})
    expect(flows == [True], "roi_align of no regions must still be built from input, as torchvision's is, so that a "
                            "backward pass through it works (a detector's loss is differentiated when an image has "
                            "no proposals): input.new_zeros(...) alone has no autograd graph")


@pytest.mark.function("roi_align")
@pytest.mark.points(1)
def test_roi_align_speed(student, reference):
    def large(g):
        x = torch.randn(2, 256, 50, 50, generator=g)
        corner = torch.rand(512, 2, generator=g) * 600
        boxes = torch.cat([torch.randint(0, 2, (512, 1), generator=g).float(), corner,
                           corner + 32 + torch.rand(512, 2, generator=g) * 384], 1)
        return x, boxes, 7, 1 / 16, 2, False

    expect_fast(student, reference, "roi_align", large, factor=10, backward=True, seed=99,
                hint="compute all samples of all regions with tensor operations, not in a loop over regions or bins "
                     "(a training step also runs the backward pass through every operation of the loop)")


# mask_targets ---------------------------------------------------------------------------------

def scene(g, gt, n, height=24, width=30, dtype=torch.uint8):
    """gt random rectangle-and-disc masks, n proposals near them and their matches."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
    masks, boxes = [], []
    for _ in range(gt):
        cy, cx = torch.rand(2, generator=g, dtype=torch.float64) * torch.tensor([height, width])
        ry, rx = 2 + torch.rand(2, generator=g, dtype=torch.float64) * 6
        masks.append((((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1))
        boxes.append(torch.stack([cx - rx, cy - ry, cx + rx, cy + ry]))
    masks = torch.stack(masks).to(dtype) if gt else torch.zeros(0, height, width, dtype=dtype)
    matched = torch.randint(0, max(gt, 1), (n,), generator=g)
    base = torch.stack(boxes)[matched] if gt else torch.zeros(n, 4, dtype=torch.float64)
    jitter = (torch.rand(n, 4, generator=g, dtype=torch.float64) - 0.5) * 4
    return masks, (base + jitter).float(), matched


@pytest.mark.function("mask_targets")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 5), st.integers(0, 12), st.sampled_from([7, 14, 28]),
       st.sampled_from([torch.uint8, torch.bool, torch.float32]))
def test_mask_targets_of_random_scenes(student, reference, device, seed, gt, n, size, dtype):
    masks, proposals, matched = scene(generator(seed), gt, n, dtype=dtype)
    args = (masks.to(device), proposals.to(device), matched.to(device), size)
    expect_close(student.mask_targets(*args), reference.mask_targets(*args), f"mask targets of {n} proposals",
                 "roi_align of each proposal's matched mask (as float, one channel) with spatial_scale 1, "
                 "sampling_ratio -1, aligned=False, at M x M", atol=1e-5)


@pytest.mark.function("mask_targets")
@pytest.mark.points(1)
def test_mask_targets_dtype_and_no_proposals(student, reference, device):
    masks, proposals, matched = scene(generator(5), 3, 6)
    args = (masks.to(device), proposals.double().to(device), matched.to(device), 10)
    expect_close(student.mask_targets(*args), reference.mask_targets(*args), "mask targets of float64 proposals",
                 "the targets take the proposals' dtype", atol=1e-10)
    expect_unchanged(student, "mask_targets")
    empty = (masks.to(device), torch.zeros(0, 4, device=device), torch.zeros(0, dtype=torch.long, device=device), 28)
    expect_tensor_like(student.mask_targets(*empty), reference.mask_targets(*empty), "mask targets of no proposals")


# maskrcnn_loss --------------------------------------------------------------------------------

def loss_case(seed, gt, n, classes, device, dtype=torch.float32):
    g = generator(seed)
    masks, proposals, matched = scene(g, gt, n)
    labels = torch.randint(1, classes, (gt,), generator=g)
    logits = (torch.randn(n, classes, 14, 14, generator=g, dtype=torch.float64) * 2).to(dtype)
    return tuple(t.to(device) for t in (logits, proposals.to(dtype), masks, labels, matched))


@pytest.mark.function("maskrcnn_loss")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 10), st.integers(2, 6))
def test_maskrcnn_loss_of_random_heads(student, reference, device, seed, gt, n, classes):
    args = loss_case(seed, gt, n, classes, device)
    expect_close(student.maskrcnn_loss(*args), reference.maskrcnn_loss(*args), f"the mask loss of {n} proposals",
                 "binary cross-entropy with logits between each proposal's mask for its ground truth's class "
                 "(gt_labels[mask_matched_idxs]) and its mask target, averaged over all pixels of all proposals",
                 atol=1e-5)


@pytest.mark.function("maskrcnn_loss")
@pytest.mark.points(1)
def test_maskrcnn_loss_trains_only_the_own_class(student, reference, device):
    args = loss_case(6, 3, 8, 5, device, torch.float64)
    probe = {"kind": "backward", "wrt": [0], "grad_output": torch.tensor(1.0, dtype=torch.float64)}
    got = student.call("maskrcnn_loss", *args, probe=probe,
                       failure="the gradient of the mask loss could not be computed: {error}")
    want = reference.call("maskrcnn_loss", *args, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient of the mask loss with respect to mask_logits",
                 "only each proposal's own class mask gets a gradient (a sigmoid per pixel, no softmax over classes), "
                 "scaled by 1 / (N M M)", atol=1e-12)


@pytest.mark.function("maskrcnn_loss")
@pytest.mark.points(1)
def test_maskrcnn_loss_with_no_proposals(student, device):
    logits, proposals, masks, labels, matched = loss_case(7, 2, 0, 3, device)
    got = student.call("maskrcnn_loss", logits, proposals, masks, labels, matched,
                       failure="maskrcnn_loss failed with no proposals: {error}")
    expect(isinstance(got, torch.Tensor) and got.dim() == 0 and float(got) == 0.0,
           "with no proposals the loss is mask_logits.sum() * 0: a zero that autograd can still follow")
    probe = {"kind": "backward", "wrt": [0], "grad_output": torch.tensor(1.0)}
    student.call("maskrcnn_loss", logits, proposals, masks, labels, matched, probe=probe,
                 failure="with no proposals the loss must still be connected to mask_logits ({error})")


# paste_mask -----------------------------------------------------------------------------------

@pytest.mark.function("paste_mask")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.sampled_from([5, 14, 28]), st.integers(1, 40), st.integers(1, 40),
       st.sampled_from([torch.float32, torch.float64]))
def test_paste_mask_of_random_boxes(student, reference, device, seed, m, height, width, dtype):
    g = generator(seed)
    mask = torch.rand(m, m, generator=g, dtype=torch.float64).to(dtype).to(device)
    corner = torch.rand(2, generator=g, dtype=torch.float64) * torch.tensor([width, height]) * 1.4 - 8
    box = torch.cat([corner, corner + torch.rand(2, generator=g, dtype=torch.float64) * 30]).to(dtype).to(device)
    expect_close(student.paste_mask(mask, box, (height, width)), reference.paste_mask(mask, box, (height, width)),
                 f"a {m} x {m} mask pasted into a {height} x {width} image",
                 "pad by one cell, enlarge the box by (M + 2) / M about its centre, truncate to integers, resize "
                 "bilinearly to (y2 - y1 + 1) x (x2 - x1 + 1), keep the part inside the image", atol=1e-5)


@pytest.mark.function("paste_mask")
@pytest.mark.points(1)
def test_paste_mask_outside_and_inputs(student, reference, device):
    mask = torch.rand(6, 6, generator=generator(8)).to(device)
    for box in ([30.0, 2.0, 40.0, 9.0], [-20.0, -12.0, -3.0, -1.0], [3.0, 4.0, 3.2, 4.1], [-4.6, -3.4, 7.5, 5.5]):
        box = torch.tensor(box, device=device)
        expect_close(student.paste_mask(mask, box, (12, 16)), reference.paste_mask(mask, box, (12, 16)),
                     "a mask pasted at a box outside, across the edge of, or much smaller than the image",
                     "truncate toward zero (not floor); keep only the part inside the image; a box outside leaves "
                     "the image empty", atol=1e-6)
        expect_unchanged(student, "paste_mask")
