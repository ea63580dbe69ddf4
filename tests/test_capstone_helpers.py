"""Chapter 11's helpers (odcourse.capstone): the stages of a two-stage detector for one image, checked
against the detector's own forward pass and against anchors and objectness computed by hand, and
the proposal explorer, driven through its controls. Small untrained torchvision detectors, seeded;
nothing is downloaded or trained."""
import math

import matplotlib
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from odcourse import capstone
from odcourse.data import CLASSES, make_scene
from odcourse.rpn import tiny_backbone
from tests.explorers import set_controls, shown_statically

matplotlib.use("Agg")

SIZES, RATIOS, STRIDE = (16, 32, 64), (0.5, 1.0, 2.0), 8


def small_detector(size: int = 128, masks: bool = False, seed: int = 0):
    """The chapter's Faster R-CNN (or Mask R-CNN), untrained; its transform resizes images to `size`."""
    torch.manual_seed(seed)
    backbone = tiny_backbone(seed)
    backbone.out_channels = 64
    parts = {"backbone": backbone, "num_classes": None, "min_size": size, "max_size": size,
             "rpn_anchor_generator": AnchorGenerator((SIZES,), (RATIOS,)),
             "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100,
             "box_roi_pool": MultiScaleRoIAlign(["0"], 7, 2), "box_head": TwoMLPHead(64 * 49, 256),
             "box_predictor": FastRCNNPredictor(256, len(CLASSES)), "box_score_thresh": 0.05}
    if masks:
        return MaskRCNN(**parts, mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
                        mask_head=MaskRCNNHeads(64, (64,), dilation=1),
                        mask_predictor=MaskRCNNPredictor(64, 64, len(CLASSES))).eval()
    return FasterRCNN(**parts).eval()


def anchors_by_hand(rows: int, columns: int, stride: int) -> torch.Tensor:
    """float[rows * columns * 9, 4]: location by location (row-major), ratio by ratio, size by size."""
    cell = []
    for ratio in RATIOS:
        root = math.sqrt(ratio)
        for size in SIZES:
            w, h = size / root, size * root
            cell.append([round(-w / 2), round(-h / 2), round(w / 2), round(h / 2)])
    cell = torch.tensor(cell, dtype=torch.float32)
    shifts = torch.tensor([[j * stride, i * stride] * 2 for i in range(rows) for j in range(columns)],
                          dtype=torch.float32)
    return (shifts[:, None, :] + cell[None]).reshape(-1, 4)


def rectangles(ax, kind: str) -> dict[int, list[float]]:
    """{i: [x1, y1, x2, y2]} of the Rectangles with gid "<kind>-i" on ax."""
    found = {}
    for patch in ax.patches:
        gid = patch.get_gid() or ""
        if isinstance(patch, Rectangle) and gid.startswith(kind + "-"):
            x, y = patch.get_xy()
            found[int(gid.split("-")[1])] = [x, y, x + patch.get_width(), y + patch.get_height()]
    return found


def drawn_anchors(ax) -> torch.Tensor:
    (collection,) = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_gid() == "anchors"]
    corners = [path.vertices[:4] for path in collection.get_paths()]
    return torch.tensor([[v[:, 0].min(), v[:, 1].min(), v[:, 0].max(), v[:, 1].max()] for v in corners],
                        dtype=torch.float32).reshape(-1, 4)


# --- stages ---------------------------------------------------------------------------------------

@torch.no_grad()
def stages_by_hand(model, image):
    """(detections, the transformed batch, its features, the RPN's proposals) of one image, step by step."""
    batch, _ = model.transform([image])
    features = model.backbone(batch.tensors)
    return model([image])[0], batch, features, model.rpn(batch, {"0": features})[0][0]


def test_stages_are_what_the_detector_computes():
    model = small_detector()
    image, _ = make_scene(seed=3, index=0)
    found = capstone.stages(model, image)
    expected, _, features, proposals = stages_by_hand(model, image)
    with torch.no_grad():
        logits = model.rpn.head([features])[0][0][0]  # float[9, 16, 16]
    assert set(found.detections) == set(expected)
    assert all(torch.equal(found.detections[key], expected[key]) for key in expected)
    assert torch.equal(found.anchors, anchors_by_hand(16, 16, STRIDE))  # 2304 anchors in torchvision's order
    # anchor a of location (i, j) is row (16 i + j) 9 + a, and its objectness is sigmoid(logits[a, i, j])
    assert torch.allclose(found.objectness, logits.permute(1, 2, 0).reshape(-1).sigmoid())
    assert torch.equal(found.proposals, proposals) and len(proposals) <= 100
    assert found.proposal_scores.shape == (len(proposals),)
    assert torch.all(found.proposal_scores[:-1] >= found.proposal_scores[1:])  # best first
    assert found.proposals.min() >= 0 and found.proposals.max() <= 128


def test_stages_are_in_the_input_images_pixels_when_the_model_resizes():
    model = small_detector(size=256, masks=True)  # a 128 x 128 image is enlarged twice
    image, _ = make_scene(seed=3, index=1)
    found = capstone.stages(model, image)
    expected, batch, _, proposals = stages_by_hand(model, image)
    assert tuple(batch.tensors.shape[-2:]) == (256, 256)
    assert set(found.detections) == {"boxes", "scores", "labels", "masks"}
    assert all(torch.equal(found.detections[key], expected[key]) for key in expected)
    assert found.detections["masks"].shape[-2:] == (128, 128)
    assert torch.allclose(found.proposals, proposals / 2)
    assert torch.allclose(found.anchors, anchors_by_hand(32, 32, STRIDE) / 2)
    assert found.proposals.max() <= 128


# --- the explorer ---------------------------------------------------------------------------------

def explorer_data(count: int = 3):
    scenes = [make_scene(seed=4, index=n) for n in range(count)]
    return [image for image, _ in scenes], [target for _, target in scenes]


def test_explorer_draws_the_anchors_above_the_objectness_threshold():
    model = small_detector()
    with torch.no_grad():  # objectness by anchor shape only: sigmoid(-4), ..., sigmoid(4), the same everywhere
        model.rpn.head.cls_logits.weight.zero_()
        model.rpn.head.cls_logits.bias.copy_(torch.arange(-4.0, 5.0))
    images, targets = explorer_data()
    explorer = capstone.ProposalExplorer(model, images, targets, CLASSES, objectness=0.5)
    explorer.redraw()
    every = anchors_by_hand(16, 16, STRIDE)
    shape = torch.arange(len(every)) % 9  # anchor a of each location
    for threshold, shapes in [(0.5, [4, 5, 6, 7, 8]), (0.85, [6, 7, 8]), (0.05, list(range(2, 9))), (0.95, [7, 8])]:
        set_controls(explorer, objectness=threshold)
        anchor_ax = explorer.figure.axes[0]
        wanted = every[torch.isin(shape, torch.tensor(shapes, dtype=torch.long))]
        assert torch.equal(drawn_anchors(anchor_ax), wanted), threshold
        assert f"anchors: {len(wanted)} of 2304" in anchor_ax.get_title()


def test_explorer_draws_the_top_n_proposals_and_the_detections_above_the_score():
    model = small_detector(seed=1)
    images, targets = explorer_data()
    calls = []
    model.backbone.register_forward_hook(lambda *args: calls.append(1))
    explorer = capstone.ProposalExplorer(model, images, targets, CLASSES, image=1, top_n=5, score=0.3)
    explorer.redraw()
    assert explorer.controls["top_n"].max == 100  # the model's post_nms_top_n at test time
    found = capstone.stages(model, images[1])
    calls.clear()
    for top_n in (1, 5, 40):
        set_controls(explorer, top_n=top_n)
        drawn = rectangles(explorer.figure.axes[1], "proposal")
        assert sorted(drawn) == list(range(top_n))
        assert torch.allclose(torch.tensor([drawn[i] for i in range(top_n)]), found.proposals[:top_n])
    scores = found.detections["scores"]
    assert len(scores) > 0
    counts = []
    for score in (0.05, float(scores[len(scores) // 2]), 1.0):
        set_controls(explorer, score=score)
        drawn = rectangles(explorer.figure.axes[2], "detection")
        chosen = torch.nonzero(scores >= score).reshape(-1).tolist()
        assert sorted(drawn) == chosen
        assert all(torch.allclose(torch.tensor(drawn[k]), found.detections["boxes"][k]) for k in chosen)
        assert f"detections: {len(chosen)} of {len(scores)}" in explorer.figure.axes[2].get_title()
        counts.append(len(chosen))
    assert counts[0] == len(scores) > counts[1] > 0 == counts[2]
    assert calls == []  # the sliders only redraw: the model ran once for this image
    for ax in explorer.figure.axes:
        assert len(rectangles(ax, "truth")) == len(targets[1]["boxes"])
    set_controls(explorer, image=2)
    assert len(calls) == 1 and explorer.figure.texts[0].get_text().startswith("image 2")
    assert len(rectangles(explorer.figure.axes[0], "truth")) == len(targets[2]["boxes"])


def test_explorer_shows_one_static_figure_while_the_book_builds(monkeypatch):
    images, _ = explorer_data(2)
    shown = shown_statically(monkeypatch, capstone.ProposalExplorer(small_detector(), images, image=1, top_n=7).show)
    assert len(shown) == 1 and isinstance(shown[0], Figure) and len(shown[0].axes) == 3
    assert len(rectangles(shown[0].axes[1], "proposal")) == 7
    assert not rectangles(shown[0].axes[0], "truth")  # no targets given: nothing dotted


def test_explorer_refuses_nothing_to_show():
    with pytest.raises(ValueError, match="at least one image"):
        capstone.ProposalExplorer(small_detector(), [])
