"""Hidden suite for a04-roi-pooling: ROI pooling and its gradient, the explicit backward through the
argmax switches, spatial pyramid pooling, the Fast R-CNN loss."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.support import (GRADING, expect_close, expect_fast, expect_gradient_matches_finite_differences,
                                       expect_tensor_like, expect_unchanged, generator)

FUNCTIONS = {"roi_pool": "roi-pool", "RoIPoolFunction": "roi-pool-function",
             "spatial_pyramid_pool": "spatial-pyramid-pool", "fast_rcnn_loss": "fast-rcnn-loss"}
BANNED = {
    "roi_pool": ["torchvision.ops"],
    "RoIPoolFunction": ["torchvision.ops", "torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward",
                        "torch.enable_grad", "torch.set_grad_enabled", "torch.autograd.functional", "torch.func"],
    "spatial_pyramid_pool": ["torch.nn.functional.adaptive_max_pool2d", "torch.nn.AdaptiveMaxPool2d",
                             "torch.adaptive_max_pool2d", "torchvision.ops", "aten::adaptive_max_pool2d",
                             "aten::adaptive_max_pool3d"],
    "fast_rcnn_loss": ["torchvision.models.detection.roi_heads", "torchvision.models.detection"],
}
APPLY = "RoIPoolFunction.apply"


def regions(g, k, images, image_size, dtype=torch.float64, outside=0.2, half=False):
    """float[k, 5] (batch_index, x1, y1, x2, y2) in image pixels; some stick out of the image,
    some are thin; `half` puts corners on .5 (rounding ties)."""
    corner = torch.rand(k, 2, generator=g, dtype=torch.float64) * image_size * (1 + outside) - image_size * outside / 2
    size = torch.rand(k, 2, generator=g, dtype=torch.float64) * image_size * 0.6
    boxes = torch.cat([corner, corner + size], 1)
    if half:
        boxes = boxes.floor() + 0.5
    index = torch.randint(0, images, (k, 1), generator=g).to(torch.float64)
    return torch.cat([index, boxes], 1).to(dtype)


@st.composite
def pooling_inputs(draw, max_regions=30):
    """(seed, images, channels, height, width, regions, output_size, spatial_scale, dtype)."""
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
            draw(st.integers(1, 14)), draw(st.integers(1, 14)), draw(st.integers(0, max_regions)),
            draw(st.sampled_from([1, 2, 3, 7, (2, 3), (5, 1)])), draw(st.sampled_from([1.0, 0.5, 0.25, 1 / 16])),
            draw(st.sampled_from([torch.float32, torch.float64])))


def make(params, device, half=False):
    seed, n, c, h, w, k, size, scale, dtype = params
    g = generator(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(dtype).to(device)
    boxes = regions(g, k, n, max(h, w) / scale, dtype, half=half).to(device)
    return x, boxes, size, scale


def speed_inputs(g):
    """512 proposals of 32 to 416 pixels on two 800 x 800 images, a 256-channel stride-16 map."""
    x = torch.randn(2, 256, 50, 50, generator=g)
    corner = torch.rand(512, 2, generator=g) * 600
    boxes = torch.cat([torch.randint(0, 2, (512, 1), generator=g).float(), corner,
                       corner + 32 + torch.rand(512, 2, generator=g) * 384], 1)
    return x, boxes, 7, 1 / 16


# roi_pool -------------------------------------------------------------------------------------

@pytest.mark.function("roi_pool")
@pytest.mark.points(2)
@GRADING
@given(pooling_inputs())
def test_roi_pool_of_random_regions(student, reference, device, params):
    x, boxes, size, scale = make(params, device)
    expect_close(student.roi_pool(x, boxes, size, scale), reference.roi_pool(x, boxes, size, scale),
                 f"roi_pool of {len(boxes)} regions (output_size {size}, spatial_scale {scale:g})",
                 "round the scaled box, sections from floor(i h_r / h) to ceil((i + 1) h_r / h) offset by the "
                 "box's first cell and clipped to the map, the max of each section, 0 for an empty one",
                 atol=0, rtol=0)


@pytest.mark.function("roi_pool")
@pytest.mark.points(1)
@GRADING
@given(pooling_inputs(max_regions=12))
def test_roi_pool_rounds_halves_away_from_zero(student, reference, device, params):
    seed, n, c, h, w, k, size, _, dtype = params
    x, boxes, size, scale = make((seed, n, c, h, w, max(k, 1), size, 1.0, dtype), device, half=True)
    expect_close(student.roi_pool(x, boxes, size, scale), reference.roi_pool(x, boxes, size, scale),
                 "roi_pool of regions whose corners end in .5",
                 "a coordinate x.5 rounds away from zero (as C's round), not to the even neighbour "
                 "(torch.round) nor down", atol=0, rtol=0)


@pytest.mark.function("roi_pool")
@pytest.mark.points(1)
def test_roi_pool_batches_empty_and_layout(student, reference, device):
    g = generator(7)
    x = torch.randn(3, 4, 9, 11, generator=g).to(device)
    boxes = regions(g, 20, 3, 11.0, torch.float32, outside=1.5).to(device)  # many far outside the map
    expect_close(student.roi_pool(x, boxes, 3, 1.0), reference.roi_pool(x, boxes, 3, 1.0),
                 "roi_pool over a batch of 3 images with regions partly or wholly outside the map",
                 "take each region from the image its first column names; sections outside the map give 0",
                 atol=0, rtol=0)
    expect_unchanged(student, "roi_pool")
    layout = x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # same values, other strides
    expect_close(student.roi_pool(layout, boxes, 3, 1.0), reference.roi_pool(x, boxes, 3, 1.0),
                 "roi_pool of a non-contiguous input", "do not assume a contiguous layout (use reshape, not view)",
                 atol=0, rtol=0)
    empty = torch.zeros(0, 5, device=device)
    expect_tensor_like(student.roi_pool(x, empty, (2, 3), 1.0), reference.roi_pool(x, empty, (2, 3), 1.0),
                       "roi_pool of no regions")


def gradient(proxy, name, x, boxes, size, scale, upstream):
    return proxy.call(name, x, boxes, size, scale, probe={"kind": "backward", "wrt": [0], "grad_output": upstream},
                      failure=f"the gradient through {name.split('.')[0]} could not be computed ({{error}}): the "
                              "output must stay connected to input for autograd")


@pytest.mark.function("roi_pool")
@pytest.mark.points(1)
def test_roi_pool_gradient_goes_to_the_switches(student, reference, device):
    g = generator(8)
    x = torch.randn(2, 3, 12, 10, generator=g, dtype=torch.float64).to(device)
    boxes = regions(g, 25, 2, 12.0, torch.float64).to(device)
    upstream = torch.randn(25, 3, 3, 3, generator=g, dtype=torch.float64).to(device)
    got, want = gradient(student, "roi_pool", x, boxes, 3, 1.0, upstream), gradient(reference, "roi_pool", x, boxes,
                                                                                     3, 1.0, upstream)
    expect_close(got[1][0], want[1][0], "the gradient of roi_pool with respect to input",
                 "each output's gradient goes to the cell holding its section's maximum, and adds up where regions "
                 "overlap", atol=1e-12)
    ties = torch.randint(0, 3, (2, 3, 12, 10), generator=g).to(torch.float64).to(device)  # many equal values
    got, want = gradient(student, "roi_pool", ties, boxes, 3, 1.0, upstream), gradient(reference, "roi_pool", ties,
                                                                                        boxes, 3, 1.0, upstream)
    expect_close(got[1][0], want[1][0], "the gradient of roi_pool where a section has several equal maxima",
                 "the whole gradient goes to the first of them in row-major order, as in torchvision", atol=1e-12)


@pytest.mark.function("roi_pool")
@pytest.mark.points(1)
def test_roi_pool_speed(student, reference):
    # 20 times: a padded gather over every section (a fair answer) takes 8 to 9 times the reference's
    # sparse table on this workload, too near 10 under load; a loop over sections takes minutes.
    expect_fast(student, reference, "roi_pool", speed_inputs, factor=20, backward=True, seed=99,
                hint="gather all sections of all regions at once instead of looping over regions or sections (a "
                     "training step also runs the backward pass through every operation of the loop)")


# RoIPoolFunction ------------------------------------------------------------------------------

@pytest.mark.function("RoIPoolFunction")
@pytest.mark.points(1)
@GRADING
@given(pooling_inputs())
def test_roi_pool_function_forward(student, reference, device, params):
    x, boxes, size, scale = make(params, device)
    expect_close(student.call(APPLY, x, boxes, size, scale), reference.call(APPLY, x, boxes, size, scale),
                 "RoIPoolFunction.apply", "forward must return what roi_pool returns", atol=0, rtol=0)


@pytest.mark.function("RoIPoolFunction")
@pytest.mark.points(2)
@GRADING
@given(pooling_inputs())
def test_roi_pool_function_backward(student, reference, device, params):
    x, boxes, size, scale = make(params, device)
    seed = params[0]
    x = x.double()
    boxes = boxes.double()
    shape = reference.call(APPLY, x, boxes, size, scale).shape
    upstream = torch.randn(*shape, generator=generator(seed + 1), dtype=torch.float64).to(device)
    got = gradient(student, APPLY, x, boxes, size, scale, upstream)
    want = gradient(reference, APPLY, x, boxes, size, scale, upstream)
    expect_close(got[1][0], want[1][0], "the gradient that backward returns for input",
                 "dL/dx_i = the sum of dL/dy_rj over all regions r and sections j whose switch is cell i (shared "
                 "switches add up, cells that are no switch get 0, empty sections send nothing)", atol=1e-12)


@pytest.mark.function("RoIPoolFunction")
@pytest.mark.points(1)
def test_roi_pool_function_backward_matches_finite_differences(student, device):
    g = generator(11)
    x = torch.rand(2, 2, 7, 8, generator=g, dtype=torch.float64).to(device)
    boxes = regions(g, 6, 2, 8.0, torch.float64).to(device)
    upstream = torch.randn(6, 2, 2, 3, generator=g, dtype=torch.float64).to(device)
    # Random float64 features have no ties, so max pooling is differentiable at x: the gradient along
    # a direction equals the forward's change along it (what torch.autograd.gradcheck checks), both
    # computed here from values the worker returned.
    expect_gradient_matches_finite_differences(student, APPLY, (x, boxes, (2, 3), 1.0), 0, upstream,
                                               "RoIPoolFunction in float64", seed=11)


@pytest.mark.function("RoIPoolFunction")
@pytest.mark.points(1)
def test_roi_pool_function_backward_with_ties_and_no_regions(student, reference, device):
    g = generator(12)
    ties = torch.randint(0, 2, (1, 2, 9, 9), generator=g).to(torch.float64).to(device)
    boxes = regions(g, 10, 1, 9.0, torch.float64).to(device)
    upstream = torch.randn(10, 2, 3, 3, generator=g, dtype=torch.float64).to(device)
    got, want = gradient(student, APPLY, ties, boxes, 3, 1.0, upstream), gradient(reference, APPLY, ties, boxes, 3,
                                                                                   1.0, upstream)
    expect_close(got[1][0], want[1][0], "backward where sections have several equal maxima",
                 "the switch of a section is its first maximal cell in row-major order", atol=1e-12)
    empty = torch.zeros(0, 5, dtype=torch.float64, device=device)
    got = gradient(student, APPLY, ties, empty, 3, 1.0, torch.zeros(0, 2, 3, 3, dtype=torch.float64, device=device))
    expect_close(got[1][0], torch.zeros_like(ties), "the gradient with no regions", "no regions: a zero gradient",
                 atol=0)


# spatial_pyramid_pool -------------------------------------------------------------------------

@st.composite
def pyramid_inputs(draw):
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 3)), draw(st.integers(1, 5)),
            draw(st.integers(1, 30)), draw(st.integers(1, 30)), draw(st.sampled_from([torch.float32, torch.float64])))


@pytest.mark.function("spatial_pyramid_pool")
@pytest.mark.points(2)
@GRADING
@given(pyramid_inputs())
def test_spatial_pyramid_pool_of_random_maps(student, reference, device, params):
    seed, n, c, h, w, dtype = params
    x = torch.randn(n, c, h, w, generator=generator(seed), dtype=torch.float64).to(dtype).to(device)
    expect_close(student.spatial_pyramid_pool(x), reference.spatial_pyramid_pool(x),
                 f"spatial_pyramid_pool of a {h} x {w} map", "bin i of n along a side a covers floor(i a / n) to "
                 "ceil((i + 1) a / n); per level C * n * n values in the order channel, bin row, bin column; levels "
                 "4, 2, 1 in that order", atol=0, rtol=0)


@pytest.mark.function("spatial_pyramid_pool")
@pytest.mark.points(1)
def test_spatial_pyramid_pool_levels_and_small_maps(student, reference, device):
    g = generator(13)
    for h, w, levels in ((2, 3, (1, 3)), (6, 1, (6, 2)), (13, 13, (6, 3, 2, 1)), (5, 9, (2,))):
        x = torch.randn(2, 3, h, w, generator=g).to(device)
        expect_close(student.spatial_pyramid_pool(x, levels), reference.spatial_pyramid_pool(x, levels),
                     f"spatial_pyramid_pool with levels {levels} of a {h} x {w} map",
                     "use the levels given, in their order; a side shorter than n still gives n bins (they repeat "
                     "cells)", atol=0, rtol=0)


@pytest.mark.function("spatial_pyramid_pool")
@pytest.mark.points(1)
def test_spatial_pyramid_pool_gradient_and_inputs(student, reference, device):
    g = generator(14)
    x = torch.randn(2, 3, 11, 7, generator=g, dtype=torch.float64).to(device)
    upstream = torch.randn(2, 3 * 21, generator=g, dtype=torch.float64).to(device)
    probe = {"kind": "backward", "wrt": [0], "grad_output": upstream}
    got = student.call("spatial_pyramid_pool", x, probe=probe,
                       failure="the gradient through spatial_pyramid_pool could not be computed: {error}")
    want = reference.call("spatial_pyramid_pool", x, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient of spatial_pyramid_pool",
                 "the pooled values must stay connected to the input for autograd (no .detach(), numpy or loops "
                 "writing into a tensor created without the input)", atol=1e-12)
    student.spatial_pyramid_pool(x)
    expect_unchanged(student, "spatial_pyramid_pool")


# fast_rcnn_loss -------------------------------------------------------------------------------

def loss_inputs(g, n, classes, dtype=torch.float32, foreground=0.4):
    logits = torch.randn(n, classes + 1, generator=g, dtype=torch.float64).to(dtype) * 2
    deltas = torch.randn(n, (classes + 1) * 4, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(1, classes + 1, (n,), generator=g)
    labels[torch.rand(n, generator=g) > foreground] = 0
    targets = (torch.randn(n, 4, generator=g, dtype=torch.float64) * 0.3).to(dtype)
    return logits, deltas, labels, targets


def losses(proxy, args, what):
    value = proxy.call("fast_rcnn_loss", *args, failure=f"fast_rcnn_loss failed on {what}: {{error}}")
    expect(isinstance(value, tuple) and len(value) == 2, "fast_rcnn_loss must return a tuple "
                                                         "(classification_loss, box_loss)")
    return value


@pytest.mark.function("fast_rcnn_loss")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 64), st.integers(1, 6), st.sampled_from([torch.float32,
                                                                                           torch.float64]))
def test_fast_rcnn_loss_of_random_heads(student, reference, device, seed, n, classes, dtype):
    args = tuple(t.to(device) for t in loss_inputs(generator(seed), n, classes, dtype))
    got, want = losses(student, args, f"{n} regions"), reference.fast_rcnn_loss(*args)
    expect_close(got[0], want[0], "classification_loss", "the cross-entropy of the softmax over the K + 1 classes, "
                 "averaged over all regions", atol=1e-5)
    expect_close(got[1], want[1], "box_loss", "smooth L1 (beta = 1/9) between the targets and the 4 deltas of the "
                 "region's own class, for foreground regions only, summed and divided by the number of all regions",
                 atol=1e-5)


@pytest.mark.function("fast_rcnn_loss")
@pytest.mark.points(1)
def test_fast_rcnn_loss_normalises_by_all_regions(student, reference, device):
    args = tuple(t.to(device) for t in loss_inputs(generator(15), 128, 3, foreground=0.1))
    got, want = losses(student, args, "128 regions, few of them foreground"), reference.fast_rcnn_loss(*args)
    expect_close(got[1], want[1], "box_loss with 128 regions of which a few are foreground",
                 "divide the summed box loss by the number of all sampled regions (N), not by the foreground ones; "
                 "background regions add nothing", atol=1e-5)


@pytest.mark.function("fast_rcnn_loss")
@pytest.mark.points(1)
def test_fast_rcnn_loss_uses_the_true_class_deltas(student, reference, device):
    logits, deltas, labels, targets = loss_inputs(generator(16), 40, 4)
    labels[:20] = torch.arange(20) % 4 + 1
    deltas = deltas.view(40, 5, 4)
    deltas[torch.arange(40), (labels + 1) % 5] += 50.0  # wild deltas for a class the region is not
    args = tuple(t.to(device) for t in (logits, deltas.view(40, 20), labels, targets))
    got, want = losses(student, args, "deltas of the wrong classes"), reference.fast_rcnn_loss(*args)
    expect_close(got[1], want[1], "box_loss when the deltas of other classes are far off",
                 "only the 4 deltas of the region's true class (columns 4u to 4u + 3) count", atol=1e-4)


@pytest.mark.function("fast_rcnn_loss")
@pytest.mark.points(1)
def test_fast_rcnn_loss_gradient_and_no_regions(student, reference, device):
    logits, deltas, labels, targets = (t.to(device) for t in loss_inputs(generator(17), 30, 3, torch.float64))
    probe = {"kind": "backward", "wrt": [0, 1],
             "grad_output": (torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))}
    got = student.call("fast_rcnn_loss", logits, deltas, labels, targets, probe=probe,
                       failure="the gradient of the losses could not be computed: {error}")
    want = reference.call("fast_rcnn_loss", logits, deltas, labels, targets, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient of the losses with respect to class_logits",
                 "both losses must be tensors that autograd can follow back to the heads", atol=1e-10)
    expect_close(got[1][1], want[1][1], "the gradient of the losses with respect to box_regression",
                 "both losses must be tensors that autograd can follow back to the heads", atol=1e-10)
    empty = (logits[:0], deltas[:0], labels[:0], targets[:0])
    got = losses(student, empty, "no regions")
    expect(all(isinstance(v, torch.Tensor) and v.dim() == 0 and bool(torch.isnan(v)) for v in got),
           "with no sampled regions both losses are nan, as in torchvision (a mean over nothing), not an error")
