"""Visible checks for assignment a06-roi-align: ``from odcourse.checks import roialign as check``.

torchvision's operators are the yardstick (the graded functions must equal them); the inputs
are small enough to reason about by hand.
"""
from __future__ import annotations

import torch

from . import Report
from .tensors import boxes_picture, call_keeping_inputs, close, expect_tensor, note_if_accepted

# A 4 x 5 map whose cell (row i, column j) holds 10 i + j: interpolated values are easy to predict.
GRID = (10 * torch.arange(4.0)[:, None] + torch.arange(5.0)[None, :])[None]


def _roi_align(*args, **kwargs):
    from torchvision.ops import roi_align
    return roi_align(*args, **kwargs)


def bilinear_interpolate(fn) -> None:
    """Check ``bilinear_interpolate`` on a map holding 10 * row + column, inside and at the border."""
    with Report("bilinear_interpolate") as report:
        cases = [  # (what, y, x, expected, hint)
            ("cell centres", [0.0, 2.0, 3.0], [0.0, 4.0, 1.0], [0.0, 24.0, 31.0], "cell (i, j) sits at (y, x) = (i, j)"),
            ("between cells", [0.5, 1.25, 2.0], [0.5, 3.0, 2.75], [5.5, 15.5, 22.75],
             "v = hy hx I00 + hy lx I01 + ly hx I10 + ly lx I11 with ly = y - floor(y)"),
            ("below 0 but not below -1", [-0.5, 1.0], [1.0, -1.0], [1.0, 10.0], "a negative y or x is set to 0"),
            ("past the last row or column", [3.5, 2.0, 4.0], [1.0, 4.5, 5.0], [31.0, 24.0, 34.0],
             "beyond H - 1 (up to H) the last row is repeated, and likewise for columns"),
            ("outside", [-1.5, 4.5, 1.0, 1.0], [1.0, 1.0, 5.5, -2.0], [0.0, 0.0, 0.0, 0.0],
             "y < -1, y > H, x < -1 or x > W gives 0"),
        ]
        for what, y, x, want, hint in cases:
            y, x, want = torch.tensor(y), torch.tensor(x), torch.tensor(want)[None]
            got = call_keeping_inputs(report, fn, GRID, y, x)
            if expect_tensor(report, got, what, shape=(1, len(y)), dtype=torch.float32):
                report.expect(close(got, want), f"{what}: got {[round(v, 3) for v in got[0].tolist()]} but expected "
                                                f"{want[0].tolist()} ({hint})")
        two = torch.stack([GRID[0], -GRID[0]]).double()
        points = torch.tensor([[0.5, 1.5], [2.5, 3.0]], dtype=torch.float64)
        got = report.call(fn, two, points, points.flip(1))
        expect_tensor(report, got, "a 2-channel float64 map at a 2 x 2 grid of points", shape=(2, 2, 2),
                      dtype=torch.float64)
        leaf = GRID.clone().requires_grad_(True)
        out = report.call(fn, leaf, torch.tensor([1.5]), torch.tensor([2.25]))
        if report.expect(isinstance(out, torch.Tensor) and out.requires_grad,
                         "the result must be differentiable with respect to input"):
            grad, = torch.autograd.grad(out.sum(), leaf)
            want = torch.zeros(1, 4, 5)
            want[0, 1, 2], want[0, 1, 3], want[0, 2, 2], want[0, 2, 3] = 0.375, 0.125, 0.375, 0.125
            report.expect(close(grad, want), "the gradient of a value goes to its 4 cells with the 4 weights")


def roi_align(fn) -> None:
    """Check ``roi_align`` against torchvision for each sampling ratio and both values of aligned."""
    with Report("roi_align") as report:
        x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
        boxes = torch.tensor([[0, 1.3, 2.2, 7.9, 6.1], [1, 0, 0, 11, 9], [0, 4.5, 3.25, 5.0, 3.5],
                              [1, -3.0, -2.0, 4.0, 12.0], [0, 6.0, 6.0, 5.0, 5.0]])
        report.illustrate(boxes_picture({"regions": (boxes[:, 1:], "#e6194b")}, "the regions on the 9 x 11 map",
                                        size=(9, 11)))
        for size, scale, ratio, aligned in ((2, 1.0, 2, False), ((3, 2), 1.0, -1, False), (2, 0.5, 1, True),
                                            (4, 1.0, -1, True), (1, 2.0, 3, False)):
            what = f"output_size {size}, spatial_scale {scale}, sampling_ratio {ratio}, aligned={aligned}"
            got = call_keeping_inputs(report, fn, x, boxes, size, scale, ratio, aligned)
            want = _roi_align(x, boxes, size, scale, ratio, aligned)
            if expect_tensor(report, got, what, shape=tuple(want.shape), dtype=torch.float32):
                wrong = ~torch.isclose(got, want, atol=1e-5, rtol=1e-5)
                rows = sorted({int(r) for r in wrong.nonzero()[:, 0]}) if wrong.any() else []
                report.expect(not rows, f"{what}: regions {rows} differ from torchvision's (sample at y1' + p b_h + "
                                        "(i + 1/2) b_h / g, with g = ceil(h_r / h) when sampling_ratio <= 0; "
                                        "subtract 0.5 when aligned; raise w_r, h_r to 1 only when not aligned)")
        empty = report.call(fn, x.clone().requires_grad_(True), torch.zeros(0, 5), 3, 1.0, 2, False)
        if expect_tensor(report, empty, "roi_align of no regions", shape=(0, 3, 3, 3)):
            report.expect(empty.requires_grad, "with no regions the empty result must still be built from input "
                                               "(as torchvision's is), so that a backward pass through it works: "
                                               "input.new_zeros(...) alone has no autograd graph")
        note_if_accepted(report, fn, (x, boxes[:, 1:], 2, 1.0, 2, False), "boxes of shape [5, 4] (no batch index)")
        leaf = x.double().requires_grad_(True)
        out = report.call(fn, leaf, boxes.double(), 2, 1.0, -1, True)
        if report.expect(isinstance(out, torch.Tensor) and out.requires_grad,
                         "the result must be differentiable with respect to input"):
            upstream = torch.rand(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            got, = torch.autograd.grad(out, leaf, upstream)
            reference = x.double().requires_grad_(True)
            want, = torch.autograd.grad(_roi_align(reference, boxes.double(), 2, 1.0, -1, True), reference, upstream)
            report.expect(close(got, want, atol=1e-10), "the gradient with respect to input differs from torchvision's")


def _shapes():
    """Two 12 x 16 ground-truth masks (a rectangle, a disc) and three proposals near them."""
    masks = torch.zeros(2, 12, 16, dtype=torch.uint8)
    masks[0, 2:7, 3:10] = 1
    rows, cols = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    masks[1] = ((rows - 7.5) ** 2 + (cols - 11.5) ** 2 <= 12).to(torch.uint8)
    proposals = torch.tensor([[2.0, 1.5, 11.0, 8.0], [8.0, 4.0, 15.5, 11.5], [3.0, 2.0, 9.0, 6.5]])
    return masks, proposals, torch.tensor([0, 1, 0])


def _masks_picture(mask: torch.Tensor, groups: dict, title: str):
    """A drawing function: a mask (or an image of masks) with boxes over it."""
    def draw():
        figure = boxes_picture(groups, title, size=tuple(mask.shape))()
        figure.axes[0].imshow(mask.detach().cpu().double(), cmap="Greys", alpha=0.5, vmin=0, vmax=1,
                              extent=(0, mask.shape[1], mask.shape[0], 0))
        return figure
    return draw


def mask_targets(fn) -> None:
    """Check ``mask_targets`` against torchvision's roi_align of the masks."""
    with Report("mask_targets") as report:
        masks, proposals, matched = _shapes()
        report.illustrate(_masks_picture(masks.amax(0), {"proposals": (proposals, "#e6194b")},
                                         "the ground-truth masks and the proposals"))
        got = call_keeping_inputs(report, fn, masks, proposals, matched, 6)
        rois = torch.cat([matched[:, None].float(), proposals], dim=1)
        want = _roi_align(masks[:, None].float(), rois, (6, 6), 1.0)[:, 0]
        if expect_tensor(report, got, "mask targets of 3 proposals", shape=(3, 6, 6), dtype=torch.float32):
            report.expect(close(got, want), "each target is roi_align of its matched ground-truth mask (as float) "
                                            "over the proposal: spatial_scale 1, sampling_ratio -1, aligned=False")
        empty = report.call(fn, masks, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 28)
        expect_tensor(report, empty, "mask targets of no proposals", shape=(0, 28, 28))


def maskrcnn_loss(fn) -> None:
    """Check ``maskrcnn_loss`` against torchvision's on one image."""
    from torchvision.models.detection.roi_heads import maskrcnn_loss as torchvision_loss

    with Report("maskrcnn_loss") as report:
        masks, proposals, matched = _shapes()
        labels = torch.tensor([2, 1])
        logits = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(2))
        got = call_keeping_inputs(report, fn, logits, proposals, masks, labels, matched)
        want = torchvision_loss(logits, [proposals], [masks], [labels], [matched])
        if expect_tensor(report, got, "the mask loss", shape=()):
            report.expect(close(got, want), f"loss {float(got.detach()):.5f} but expected {float(want):.5f}: binary cross-entropy "
                                            "with logits of each proposal's own class mask (the label of its matched "
                                            "ground truth) against its mask target, averaged over all pixels")
        leaf = logits.clone().requires_grad_(True)
        out = report.call(fn, leaf, proposals, masks, labels, matched)
        if report.expect(isinstance(out, torch.Tensor) and out.requires_grad, "the loss must be differentiable"):
            grad, = torch.autograd.grad(out, leaf)
            other = torch.ones(3, 3, dtype=torch.bool)
            other[torch.arange(3), labels[matched]] = False
            report.expect(bool((grad[other] == 0).all()), "the masks of the other classes must get no gradient")
        none = report.call(fn, logits[:0].clone().requires_grad_(True), proposals[:0], masks, labels, matched[:0])
        if expect_tensor(report, none, "the loss with no proposals", shape=()):
            report.expect(float(none.detach()) == 0 and none.requires_grad,
                          "with no proposals return mask_logits.sum() * 0 (zero, still differentiable)")


def paste_mask(fn) -> None:
    """Check ``paste_mask`` against torchvision's paste_masks_in_image."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    with Report("paste_mask") as report:
        mask = torch.rand(7, 7, generator=torch.Generator().manual_seed(3))
        for what, box in (("a box inside the image", [4.0, 3.0, 14.0, 10.0]),
                          ("a box with fractional corners", [2.6, 1.2, 9.7, 12.9]),
                          ("a box partly outside the image", [-5.0, 8.0, 6.0, 20.0])):
            box = torch.tensor(box)
            got = call_keeping_inputs(report, fn, mask, box, (16, 18))
            want = paste_masks_in_image(mask[None, None], box[None], (16, 18))[0, 0]
            report.illustrate(_masks_picture(want, {"box": (box[None], "#e6194b")},
                                             f"{what}: the expected pasted mask"))
            if expect_tensor(report, got, what, shape=(16, 18), dtype=torch.float32):
                report.expect(close(got, want), f"{what}: pad the mask by one cell, enlarge the box by (M + 2) / M, "
                                                "truncate it to integers, resize to its (x2 - x1 + 1) x (y2 - y1 + 1) "
                                                "pixels and keep the part inside the image")
