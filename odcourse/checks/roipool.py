"""Visible checks for assignment a04-roi-pooling: ``from odcourse.checks import roipool as check``.

torchvision's own operators are the yardstick here (they are what the graded functions must
equal); the inputs are small enough to print and reason about.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Report
from .tensors import call_keeping_inputs, close, expect_tensor, note_if_accepted

# An 8 x 8 feature map whose cell (row, column) holds a distinct number, like the slides' example.
FEATURE_MAP = (torch.arange(64, dtype=torch.float32).view(8, 8) * 37 % 64).view(1, 1, 8, 8)


def _torchvision_roi_pool(*args):
    from torchvision.ops import roi_pool
    return roi_pool(*args)


def _map_picture(features: torch.Tensor, boxes: torch.Tensor, scale: float, title: str):
    """A drawing function: the first feature map of `features` with the regions projected on it."""
    def draw():
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        figure, ax = plt.subplots(figsize=(4.5, 4.5))
        grid = features[0, 0].detach().cpu().double()
        ax.imshow(grid, cmap="Greys", alpha=0.4)
        for (row, col), value in zip(torch.cartesian_prod(torch.arange(grid.shape[0]), torch.arange(grid.shape[1])),
                                     grid.flatten()):
            ax.text(col, row, f"{value:g}", ha="center", va="center", fontsize=7)
        for box in boxes.detach().cpu().double():
            x1, y1, x2, y2 = (box[1:] * scale).tolist()
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, color="#e6194b", lw=2))
        ax.set_title(title, fontsize=9)
        return figure
    return draw


CASES = [  # (what, boxes, output_size, spatial_scale, what to think about when it fails)
    ("a 5 x 4 region pooled to 2 x 2", [[0, 1, 2, 5, 6]], 2, 1.0,
     "the box includes both end cells; section i covers rows floor(i h_r / h) to ceil((i + 1) h_r / h)"),
    ("a 7 x 3 region pooled to (3, 2)", [[0, 0, 1, 6, 3]], (3, 2), 1.0,
     "output_size (h, w) gives h rows and w columns of sections; neighbouring sections may share cells"),
    ("coordinates that end in .5", [[0, 0.5, 1.5, 4.5, 6.5]], 2, 1.0,
     "round halves away from zero (0.5 -> 1, 4.5 -> 5), not to even as torch.round does"),
    ("spatial_scale 1/4 (a stride-4 feature map)", [[0, 4, 2, 22, 30]], 3, 0.25,
     "multiply the box by spatial_scale before rounding"),
    ("a region that sticks out of the map", [[0, 5, -3, 12, 4]], 3, 1.0,
     "clip each section to the map; a section with no cell inside the map gives 0"),
    ("a region bigger than the output, 1 x 1 output", [[0, 0, 0, 7, 7]], 1, 1.0,
     "a single section is the whole region"),
]


def roi_pool(fn) -> None:
    """Check ``roi_pool`` against torchvision on small regions of an 8 x 8 map, then its gradient."""
    with Report("roi_pool") as report:
        for what, boxes, size, scale, hint in CASES:
            boxes = torch.tensor(boxes, dtype=torch.float32)
            report.illustrate(_map_picture(FEATURE_MAP, boxes, scale, what))
            got = call_keeping_inputs(report, fn, FEATURE_MAP, boxes, size, scale)
            want = _torchvision_roi_pool(FEATURE_MAP, boxes, size, scale)
            if expect_tensor(report, got, what, shape=tuple(want.shape), dtype=torch.float32):
                report.expect(close(got, want), f"{what}: got {got[0, 0].tolist()} but expected {want[0, 0].tolist()}"
                                                f" ({hint})")
        two = torch.stack([FEATURE_MAP[0], -FEATURE_MAP[0]])
        boxes = torch.tensor([[1, 0, 0, 3, 3], [0, 0, 0, 3, 3]], dtype=torch.float64)
        got = report.call(fn, two.double(), boxes, 2, 1.0)
        want = _torchvision_roi_pool(two.double(), boxes, 2, 1.0)
        if expect_tensor(report, got, "two images, float64", shape=(2, 1, 2, 2), dtype=torch.float64):
            report.expect(close(got, want), "the first column of boxes says which image of the batch a region is in")
        empty = report.call(fn, FEATURE_MAP, torch.zeros(0, 5), (2, 3), 1.0)
        expect_tensor(report, empty, "roi_pool of no regions", shape=(0, 1, 2, 3))
        note_if_accepted(report, fn, (FEATURE_MAP, torch.tensor([[0.0, 0.0, 3.0, 3.0]]), 2, 1.0),
                         "boxes of shape [1, 4] (no batch index)")

        # Gradient: overlapping regions share switches; ties go to the first cell in row-major order.
        x = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ties = torch.cat([x, torch.zeros(1, 1, 8, 8, dtype=torch.float64)], dim=1)
        boxes = torch.tensor([[0, 0, 0, 5, 5], [0, 2, 1, 7, 6]], dtype=torch.float64)
        upstream = torch.arange(1.0, 1 + 2 * 3 * 2 * 2, dtype=torch.float64).view(2, 3, 2, 2)
        leaf = ties.clone().requires_grad_(True)
        out = report.call(fn, leaf, boxes, 2, 1.0)
        if report.expect(isinstance(out, torch.Tensor) and out.requires_grad,
                         "the result must be differentiable with respect to input (autograd lost track of it: "
                         "do not use .detach(), .item(), numpy or torch.no_grad() on the way)"):
            got, = torch.autograd.grad(out, leaf, upstream)
            reference = ties.clone().requires_grad_(True)
            want, = torch.autograd.grad(_torchvision_roi_pool(reference, boxes, 2, 1.0), reference, upstream)
            report.expect(close(got[:, :2], want[:, :2], atol=1e-12),
                          "the gradient of each output must go to the one cell holding its section's maximum "
                          "(and add up where two regions share that cell)")
            report.expect(close(got[:, 2], want[:, 2], atol=1e-12),
                          "in a section of equal values the whole gradient goes to its first cell in row-major "
                          "order (torch.max(..., dim) over the cells in row-major order picks it; amax shares it)")


def roi_pool_function(cls) -> None:
    """Check ``RoIPoolFunction.apply``: its forward equals torchvision's, its backward too, and gradcheck."""
    with Report("RoIPoolFunction") as report:
        apply = getattr(cls, "apply", None)
        if not report.expect(callable(apply), "RoIPoolFunction must be a torch.autograd.Function (with .apply)"):
            return
        boxes = torch.tensor([[0, 1, 2, 5, 6], [0, 0.5, 1.5, 4.5, 6.5], [0, 5, -3, 12, 4]], dtype=torch.float32)
        got = call_keeping_inputs(report, apply, FEATURE_MAP, boxes, 2, 1.0)
        want = _torchvision_roi_pool(FEATURE_MAP, boxes, 2, 1.0)
        if expect_tensor(report, got, "RoIPoolFunction.apply", shape=(3, 1, 2, 2), dtype=torch.float32):
            report.expect(close(got, want), "forward must return what roi_pool returns")
        x = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        boxes = torch.tensor([[0, 0, 0, 5, 5], [0, 2, 1, 7, 6], [1, 1, 1, 6, 3], [0, 5, -3, 12, 4]],
                             dtype=torch.float64)
        upstream = torch.rand(4, 2, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        leaf = x.clone().requires_grad_(True)
        out = report.call(apply, leaf, boxes, 3, 1.0)
        if not report.expect(isinstance(out, torch.Tensor) and out.grad_fn is not None,
                             "RoIPoolFunction.apply must return a tensor connected to its backward"):
            return
        try:
            got, = torch.autograd.grad(out, leaf, upstream)
        except NotImplementedError:
            report.expect(False, "backward is not implemented yet")
            return
        except Exception as error:  # the student's backward, reported in words
            report.expect(False, f"backward raised {type(error).__name__}: {error} (it must return one gradient "
                                 "per argument of forward: the input's, then None, None, None)")
            return
        reference = x.clone().requires_grad_(True)
        want, = torch.autograd.grad(_torchvision_roi_pool(reference, boxes, 3, 1.0), reference, upstream)
        report.expect(close(got, want, atol=1e-12),
                      "backward: dL/dx_i is the sum of dL/dy over the outputs whose switch is cell i (regions overlap, "
                      "so add them up; a cell that is no switch gets 0; an empty section sends nothing)")
        small = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        try:
            passed = torch.autograd.gradcheck(lambda z: apply(z, boxes[:2], 2, 1.0), (small.requires_grad_(True),),
                                              eps=1e-6, atol=1e-5, raise_exception=False)
        except Exception as error:
            passed = False
            report.expect(False, f"gradcheck could not run: {type(error).__name__}: {error}")
        report.expect(passed, "torch.autograd.gradcheck: the backward does not match finite differences of the forward")


def spatial_pyramid_pool(fn) -> None:
    """Check ``spatial_pyramid_pool``: one length for any size, SPP's bins, order of the levels."""
    with Report("spatial_pyramid_pool") as report:
        generator = torch.Generator().manual_seed(4)
        for height, width in ((13, 13), (9, 17), (3, 2)):
            features = torch.rand(2, 5, height, width, generator=generator)
            got = call_keeping_inputs(report, fn, features)
            want = torch.cat([F.adaptive_max_pool2d(features, n).flatten(1) for n in (4, 2, 1)], dim=1)
            if expect_tensor(report, got, f"a {height} x {width} map of 5 channels", shape=(2, 5 * 21),
                             dtype=torch.float32):
                report.expect(close(got, want), f"a {height} x {width} map: bin i of n along a side a covers "
                                                "floor(i a / n) to ceil((i + 1) a / n); values per level in the "
                                                "order channel, bin row, bin column")
        features = torch.rand(1, 2, 7, 6, generator=generator, dtype=torch.float64)
        got = report.call(fn, features, (1, 3))
        want = torch.cat([F.adaptive_max_pool2d(features, n).flatten(1) for n in (1, 3)], dim=1)
        if expect_tensor(report, got, "levels (1, 3) in float64", shape=(1, 2 * 10), dtype=torch.float64):
            report.expect(close(got, want), "the levels come in the order given, each C * n * n values")


def fast_rcnn_loss(fn) -> None:
    """Check ``fast_rcnn_loss`` against torchvision's fastrcnn_loss on small examples."""
    from torchvision.models.detection.roi_heads import fastrcnn_loss

    with Report("fast_rcnn_loss") as report:
        generator = torch.Generator().manual_seed(5)
        logits = torch.randn(6, 4, generator=generator)
        deltas = torch.randn(6, 16, generator=generator)
        labels = torch.tensor([0, 2, 0, 3, 1, 0])
        targets = torch.randn(6, 4, generator=generator)
        got = call_keeping_inputs(report, fn, logits, deltas, labels, targets)
        want = fastrcnn_loss(logits, deltas, [labels], [targets])
        if report.expect(isinstance(got, tuple) and len(got) == 2,
                         "return a tuple (classification_loss, box_loss)"):
            classification, box = got
            if expect_tensor(report, classification, "classification_loss", shape=()):
                report.expect(close(classification, want[0]), "classification_loss is the cross-entropy of the "
                                                              "softmax over K + 1 classes, averaged over all regions")
            if expect_tensor(report, box, "box_loss", shape=()):
                report.expect(close(box, want[1]),
                              f"box_loss {float(box):.5f} but expected {float(want[1]):.5f}: only foreground regions, "
                              "the 4 deltas of their true class, smooth L1 with beta = 1/9, summed and divided by "
                              "the number of all regions")
        background = report.call(fn, logits, deltas, torch.zeros(6, dtype=torch.long), targets)
        if isinstance(background, tuple) and len(background) == 2 and isinstance(background[1], torch.Tensor):
            report.expect(close(background[1], torch.tensor(0.0)), "with only background regions the box loss is 0")
        leaf_logits, leaf_deltas = logits.clone().requires_grad_(True), deltas.clone().requires_grad_(True)
        out = report.call(fn, leaf_logits, leaf_deltas, labels, targets)
        if isinstance(out, tuple) and len(out) == 2 and all(isinstance(v, torch.Tensor) for v in out):
            report.expect(out[0].requires_grad and out[1].requires_grad,
                          "both losses must be differentiable (no .item(), .detach() or numpy on the way)")
