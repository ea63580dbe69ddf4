"""Chapter 2's helpers: selective search, its hierarchy, and the explorers of proposals and IoU."""

import matplotlib
import pytest
import torch
from matplotlib.patches import Rectangle
from torchvision.ops import box_iou

from odcourse.data import SyntheticShapes, make_scene
from odcourse.iou import IoUExplorer
from odcourse.proposals import (SelectiveSearchExplorer, SlidingWindowExplorer, oversegment,
                                selective_search, selective_search_hierarchy)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def scene():
    return make_scene(0, 3)


@pytest.fixture(scope="module")
def proposals(scene):
    return selective_search(scene[0])


def segment_boxes(segments):
    boxes = []
    for label in range(int(segments.max()) + 1):
        rows, cols = torch.nonzero(segments == label, as_tuple=True)
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32)


def contains_rows(big, small):
    return bool((big[None, :, :] == small[:, None, :]).all(-1).any(1).all())


def test_selective_search_returns_unique_valid_boxes_inside_the_image(scene, proposals):
    image = scene[0]
    height, width = image.shape[-2:]
    assert proposals.dtype == torch.float32 and proposals.ndim == 2 and proposals.shape[1] == 4
    assert (proposals[:, 0] >= 0).all() and (proposals[:, 1] >= 0).all()
    assert (proposals[:, 2] <= width).all() and (proposals[:, 3] <= height).all()
    assert (proposals[:, 2] > proposals[:, 0]).all() and (proposals[:, 3] > proposals[:, 1]).all()
    assert len(torch.unique(proposals, dim=0)) == len(proposals)


def test_selective_search_contains_every_segment_and_the_whole_image(scene, proposals):
    image = scene[0]
    for scale in (100, 300, 500):
        assert contains_rows(proposals, segment_boxes(oversegment(image, scale, min_size=20)))
    assert contains_rows(proposals, torch.tensor([[0.0, 0.0, 128.0, 128.0]]))


def test_selective_search_is_deterministic_and_truncates_to_its_ranking(scene, proposals):
    again = selective_search(scene[0])
    assert torch.equal(again, proposals)
    assert torch.equal(selective_search(scene[0], max_proposals=10), proposals[:10])


def test_selective_search_finds_the_synthetic_objects():
    # Measured: all 43 objects of these 20 images found at IoU >= 0.7 (about 63 proposals per
    # image), and 42 of them within the first 20 proposals at IoU >= 0.5.
    found, found_early, total = 0, 0, 0
    for image, target in SyntheticShapes(20, seed=0):
        proposals = selective_search(image)
        found += int((box_iou(target["boxes"], proposals).max(1).values >= 0.7).sum())
        found_early += int((box_iou(target["boxes"], proposals[:20]).max(1).values >= 0.5).sum())
        total += len(target["boxes"])
    assert found / total >= 0.9
    assert found_early / total >= 0.8


def test_a_hierarchy_merges_down_to_one_region(scene):
    image = scene[0]
    hierarchy = selective_search_hierarchy(image, 100, ("colour", "size"))
    count = hierarchy.num_segments
    assert torch.equal(hierarchy.segments, oversegment(image, 100, min_size=20))
    assert hierarchy.num_merges == count - 1
    assert hierarchy.boxes.shape == (2 * count - 1, 4)
    assert hierarchy.boxes[-1].tolist() == [0, 0, 128, 128]
    assert torch.equal(hierarchy.labels_at(0), hierarchy.segments)
    assert (hierarchy.labels_at(count - 1) == 2 * count - 2).all()
    for step in (0, 5, count - 1):
        assert len(hierarchy.regions_at(step)) == count - step
    # each merge joins two regions that exist at that moment into a new one covering both
    a, b = hierarchy.merges[0].tolist()
    new = hierarchy.boxes[count]
    assert new[:2].tolist() == torch.minimum(hierarchy.boxes[a, :2], hierarchy.boxes[b, :2]).tolist()
    assert new[2:].tolist() == torch.maximum(hierarchy.boxes[a, 2:], hierarchy.boxes[b, 2:]).tolist()
    with pytest.raises(ValueError, match="similarities"):
        selective_search_hierarchy(image, 100, ("shape",))


def test_selective_search_explorer_draws_one_box_per_region(scene):
    explorer = SelectiveSearchExplorer(scene[0], merges=0)
    figure = explorer.redraw()
    hierarchy = explorer.hierarchy(explorer.controls["strategy"].value)
    assert len(figure.axes[1].patches) == hierarchy.num_segments
    explorer.controls["merges"].value = 5
    assert explorer.figure is not figure
    assert len(explorer.figure.axes[1].patches) == hierarchy.num_segments - 5
    assert explorer.figure.axes[1].patches[-1].get_linewidth() == 3.0  # the newest region
    assert "after 5 of" in explorer.figure._suptitle.get_text()
    explorer.controls["strategy"].value = "k=500, C+T+S+F"
    coarse = explorer.hierarchy("k=500, C+T+S+F")
    assert explorer.controls["merges"].max == coarse.num_merges
    merges = explorer.controls["merges"].value
    assert len(explorer.figure.axes[1].patches) == coarse.num_segments - merges


def test_sliding_window_explorer_draws_every_window(scene):
    explorer = SlidingWindowExplorer(scene[0], size=48, aspect="1:1 (h/w 1)", stride=16)
    figure = explorer.redraw()
    assert len(figure.axes[0].patches) == ((128 - 48) // 16 + 1) ** 2
    explorer.controls["aspect"].value = "1:2 (h/w 0.5)"  # r = height / width = 0.5: 96 wide, 48 high
    explorer.controls["stride"].value = 8
    axes = explorer.figure.axes[0]
    assert len(axes.patches) == ((128 - 96) // 8 + 1) * ((128 - 48) // 8 + 1)
    assert axes.get_title().startswith(f"{len(axes.patches)} windows of 96 x 48 px")
    assert f"640 x 480 image: {((640 - 96) // 8 + 1) * ((480 - 48) // 8 + 1)}" in axes.get_xlabel()


def test_sliding_window_explorer_takes_a_ratio_alone_and_names_the_ratios_it_knows(scene):
    assert SlidingWindowExplorer(scene[0], aspect="2:1").controls["aspect"].value == "2:1 (h/w 2)"
    with pytest.raises(ValueError, match="aspect must be one of '1:2', '1:1', '2:1', not '3:1'"):
        SlidingWindowExplorer(scene[0], aspect="3:1")


def test_iou_explorer_prints_torchvisions_iou_and_shades_the_intersection():
    explorer = IoUExplorer(box_a=(30, 40, 100, 110), x=60, y=60, w=70, h=60)
    explorer.redraw()
    for x, y, w, h in [(60, 60, 70, 60), (30, 40, 70, 70), (120, 0, 20, 20), (0, 0, 160, 160)]:
        explorer.controls["x"].value, explorer.controls["y"].value = x, y
        explorer.controls["w"].value, explorer.controls["h"].value = w, h
        axes = explorer.figure.axes[0]
        expected = box_iou(torch.tensor([[30.0, 40, 100, 110]]), torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32))
        assert axes.get_title() == f"IoU = {float(expected):.3f}"
        shaded = [p for p in axes.patches if p.get_gid() == "intersection"]
        assert len(shaded) == (1 if float(expected) > 0 else 0)
        boxes = [p for p in axes.patches if isinstance(p, Rectangle) and p.get_gid() != "intersection"]
        assert [b.get_bbox().bounds for b in boxes][1] == (x, y, w, h)
    assert axes.get_title() == f"IoU = {70 * 70 / (160 * 160):.3f}"  # A inside B
