"""Chapter 12's helpers (odcourse.modern): FCOS's points and matching against torchvision's
AnchorGenerator and the FCOS rules worked by hand, the two detectors of the page (built, trained a
few steps repeatably, evaluated), DETR's matching cost and assignment against brute force, and the
two explorers driven through their controls."""
import itertools

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_convert, generalized_box_iou

from odcourse import modern
from odcourse.data import SyntheticShapes
from odcourse.rpn import tiny_backbone
from tests.explorers import set_controls, shown_statically

matplotlib.use("Agg")


# FCOS's points and matching ---------------------------------------------------------------------

def test_fcos_points_are_torchvisions_anchors_for_fcos():
    strides, units = (8, 16, 32), (8, 16, 32)
    points, counts = modern.fcos_points(96, strides, units)
    generator = AnchorGenerator(tuple((u,) for u in units), ((1.0,),) * len(units))
    maps = [torch.zeros(1, 1, 96 // s, 96 // s) for s in strides]
    expected = generator(ImageList(torch.zeros(1, 3, 96, 96), [(96, 96)]), maps)[0]
    assert counts == [144, 36, 9] and torch.equal(points, expected)


def test_fcos_matches_follow_the_rules_worked_by_hand():
    # One level of unit 8 on a 64 x 64 image (range (0, inf)): the object (8, 8, 56, 40), centre (32, 24),
    # takes the points inside it within 12 pixels of its centre: x in {24, 32, 40}, y in {16, 24, 32}.
    points, counts = modern.fcos_points(64, (8,), (8,), torch.float64)
    matched = modern.fcos_matches(points, torch.tensor([[8.0, 8.0, 56.0, 40.0]], dtype=torch.float64), counts)
    centres = (points[:, :2] + points[:, 2:]) / 2
    taken = {tuple(c) for c in centres[matched == 0].tolist()}
    assert taken == {(float(x), float(y)) for x in (24, 32, 40) for y in (16, 24, 32)}
    # a smaller object inside wins the points both could take
    nested = torch.tensor([[8.0, 8.0, 56.0, 40.0], [20.0, 12.0, 36.0, 36.0]], dtype=torch.float64)
    matched = modern.fcos_matches(points, nested, counts)
    inside_small = (centres[:, 0] > 20) & (centres[:, 0] < 36) & (centres[:, 1] > 12) & (centres[:, 1] < 36)
    assert bool((matched[inside_small & (matched >= 0)] == 1).all()) and bool((matched == 0).any())
    assert bool((modern.fcos_matches(points, torch.zeros(0, 4, dtype=torch.float64), counts) == -1).all())


# The detectors -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes():
    return [item for item in SyntheticShapes(6, seed=3)]


def test_small_fcos_shares_the_capstones_backbone_and_has_three_levels(shapes):
    fcos, frcnn = modern.small_fcos(seed=0), modern.capstone_detector(seed=0)
    reference = tiny_backbone(0).state_dict()
    assert all(torch.equal(fcos.backbone.body.state_dict()[k], v) for k, v in reference.items())
    assert all(torch.equal(frcnn.backbone.state_dict()[k], v) for k, v in reference.items())
    features = fcos.backbone(torch.zeros(2, 3, 128, 128))
    assert list(features) == ["p3", "p4", "p5"] and [tuple(f.shape) for f in features.values()] == [
        (2, 64, 16, 16), (2, 64, 8, 8), (2, 64, 4, 4)]
    state = torch.get_rng_state()
    modern.small_fcos(seed=1)
    assert torch.equal(state, torch.get_rng_state())  # building does not touch the global generator
    assert frcnn.rpn.anchor_generator.sizes == ((16, 32, 64),) and frcnn.roi_heads.fg_bg_sampler.batch_size_per_image == 64
    fcos.eval()
    with torch.no_grad():
        found = fcos([image for image, _ in shapes[:2]])
    assert len(found) == 2 and set(found[0]) == {"boxes", "scores", "labels"}


def test_training_is_repeatable_and_records_every_loss(shapes):
    runs = []
    for _ in range(2):
        model = modern.small_fcos(seed=0)
        history, seconds = modern.train_detector(model, shapes, steps=3, batch_size=2, lr=5e-3, seed=0)
        runs.append(history)
        assert seconds > 0 and not model.training
    assert set(runs[0]) == {"classification", "bbox_regression", "bbox_ctrness"}
    assert all(len(v) == 3 for v in runs[0].values())
    assert all((runs[0][k] == runs[1][k]).all() for k in runs[0])
    history, _ = modern.train_detector(modern.capstone_detector(seed=0), shapes, steps=2, batch_size=2, lr=5e-3)
    assert set(history) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    found = modern.detect_all(modern.small_fcos(seed=0), [image for image, _ in shapes], chunk=4)
    assert len(found) == len(shapes) and all(v.device.type == "cpu" for f in found for v in f.values())


# DETR's matching ---------------------------------------------------------------------------------

def test_detr_cost_and_assignment_of_the_example():
    example = modern.DETR_EXAMPLE
    cost = modern.detr_cost(example["probabilities"], example["pred_boxes"], example["labels"], example["boxes"])
    by_hand = torch.zeros(6, 3)
    corners_pred = box_convert(example["pred_boxes"], "cxcywh", "xyxy")
    corners_gt = box_convert(example["boxes"], "cxcywh", "xyxy")
    for q, g in itertools.product(range(6), range(3)):
        l1 = (example["pred_boxes"][q] - example["boxes"][g]).abs().sum()
        giou = generalized_box_iou(corners_pred[q:q + 1], corners_gt[g:g + 1])[0, 0]
        by_hand[q, g] = -example["probabilities"][q, example["labels"][g]] + 5 * l1 - 2 * giou
    assert torch.allclose(cost, by_hand, atol=1e-6)
    rows, cols = modern.hungarian(cost)
    best = min(itertools.permutations(range(6), 3), key=lambda qs: sum(float(cost[q, g]) for g, q in enumerate(qs)))
    assert sorted(zip(rows.tolist(), cols.tolist())) == sorted((q, g) for g, q in enumerate(best))
    assert rows.tolist() == [0, 2, 3]  # the duplicate on object 0, prediction 1, is left to "no object"


# Explorers ---------------------------------------------------------------------------------------

def marked(figure, gid):
    (line,) = [line for ax in figure.axes for line in ax.lines if line.get_gid() == gid]
    return {(round(x), round(y)) for x, y in zip(line.get_xdata(), line.get_ydata())}


@pytest.mark.parametrize("values", [dict(x=200, y=224, width=112, height=96, radius=1.5),
                                    dict(x=256, y=256, width=300, height=200, radius=1.5),
                                    dict(x=100, y=380, width=60, height=40, radius=3.0)])
def test_fcos_explorer_draws_the_points_torchvision_gives_each_object(values):
    explorer = modern.FcosExplorer()
    explorer.redraw()
    set_controls(explorer, **values)
    figure = explorer.figure
    box = explorer.box(values["x"], values["y"], values["width"], values["height"])
    matched = modern.fcos_matches(explorer.anchors, torch.cat([box, explorer.other]), explorer.counts,
                                  values["radius"])
    centres = (explorer.anchors[:, :2] + explorer.anchors[:, 2:]) / 2
    start = 0
    for k, count in enumerate(explorer.counts):
        level, here = matched[start:start + count], centres[start:start + count]
        start += count
        assert marked(figure, f"box-points-{k}") == {(round(x), round(y)) for x, y in here[level == 0].tolist()}
        assert marked(figure, f"other-points-{k}") == {(round(x), round(y)) for x, y in here[level == 1].tolist()}
        assert figure.axes[k].get_title().startswith(f"P{3 + k} (stride {modern.FCOS_LEVELS['units'][k]}): "
                                                     f"{int((level == 0).sum())} point")
    (drawn,) = [p for p in figure.axes[0].patches if p.get_gid() == "box"]
    assert drawn.get_xy() == pytest.approx(tuple(box[0, :2].tolist()))
    (caption,) = [t.get_text() for t in figure.axes[-1].texts if t.get_gid() == "caption"]
    assert f"box {values['width']} x {values['height']} px" in caption


def test_fcos_explorer_shows_the_smaller_object_winning_and_a_static_figure(monkeypatch):
    explorer = modern.FcosExplorer()
    figure = explorer.redraw()
    assert marked(figure, "other-points-0") and marked(figure, "box-points-0")  # both on P3 by default
    shown = shown_statically(monkeypatch, explorer.show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)


@pytest.mark.parametrize("values", [dict(x=0.26, y=0.31, w_class=1.0, w_l1=5.0, w_giou=2.0),
                                    dict(x=0.8, y=0.8, w_class=1.0, w_l1=5.0, w_giou=2.0),
                                    dict(x=0.26, y=0.31, w_class=1.0, w_l1=0.0, w_giou=0.0)])
def test_matching_explorer_outlines_scipys_assignment(values, monkeypatch):
    explorer = modern.MatchingExplorer()
    explorer.redraw()
    set_controls(explorer, **values)
    figure = explorer.figure
    cost, rows, cols = explorer.assignment(**values)
    chosen = sorted(tuple(int(n) for n in p.get_gid().split("-")[1:]) for p in figure.axes[1].patches
                    if isinstance(p, Rectangle) and (p.get_gid() or "").startswith("chosen-"))
    assert chosen == sorted(zip(rows.tolist(), cols.tolist()))
    total = float(cost[rows, cols].sum())
    assert f"the assignment costs {total:.2f}" in figure.axes[1].get_title()
    solid = [p.get_gid() for p in figure.axes[0].patches if (p.get_gid() or "").startswith("prediction-")
             and p.get_linestyle() == "-"]
    assert sorted(solid) == sorted(f"prediction-{q}" for q in rows.tolist())
    assert len([line for line in figure.axes[0].lines if (line.get_gid() or "").startswith("match-")]) == 3
    if values["x"] == 0.8:  # prediction 0 moved away: the duplicate, prediction 1, takes object 0
        assert dict(zip(cols.tolist(), rows.tolist()))[0] == 1
    shown = shown_statically(monkeypatch, explorer.show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)
