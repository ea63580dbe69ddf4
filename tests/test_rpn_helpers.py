"""Chapter 5's helpers (odcourse.rpn): the anchor explorer draws torchvision's anchors for the cell a
student picks, and the RPN helpers return what torchvision's RegionProposalNetwork computes."""
import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from odcourse import rpn as rpn_helpers
from odcourse.data import SyntheticShapes, make_scene
from tests.explorers import set_controls, shown_statically

matplotlib.use("Agg")

IMAGE = make_scene(seed=2, index=0, size=256)[0]  # small, so that each redraw is quick


def drawn_anchors(figure: Figure) -> list[list[float]]:
    """(x1, y1, x2, y2) of the anchor rectangles, in the order of their gids anchor-0, anchor-1, ..."""
    found = {}
    for patch in figure.axes[0].patches:
        gid = patch.get_gid() or ""
        if isinstance(patch, Rectangle) and gid.startswith("anchor-"):
            x, y = patch.get_xy()
            found[int(gid.split("-")[1])] = [x, y, x + patch.get_width(), y + patch.get_height()]
    assert sorted(found) == list(range(len(found))), "anchor gids must be anchor-0 .. anchor-(k-1)"
    return [found[i] for i in range(len(found))]


def patch_with_gid(figure: Figure, gid: str) -> Rectangle:
    (patch,) = [p for p in figure.axes[0].patches if p.get_gid() == gid]
    return patch


def caption(figure: Figure) -> str:
    (text,) = [t for t in figure.axes[1].texts if t.get_gid() == "caption"]
    return text.get_text()


def torchvision_cell_anchors(image, row, column, sizes, ratios, stride):
    """The cell's anchors taken out of AnchorGenerator's anchors for the whole feature map."""
    height, width = image.shape[-2:]
    generator = AnchorGenerator((tuple(sizes),), (tuple(ratios),))
    feature_map = torch.zeros(1, 8, height // stride, width // stride)
    anchors = generator(ImageList(image[None], [(height, width)]), [feature_map])[0]
    k = len(sizes) * len(ratios)
    location = row * (width // stride) + column
    return anchors[location * k:(location + 1) * k]


def formula_cell_anchors(row, column, sizes, ratios, stride):
    """The same anchors from the chapter's formulas: w = s / sqrt(r), h = s sqrt(r), rounded half
    to even, shifted by (column, row) x stride, ratio by ratio and size by size."""
    anchors = []
    for ratio in ratios:
        for size in sizes:
            root = torch.sqrt(torch.tensor(ratio, dtype=torch.float32))
            w, h = size / root, size * root
            base = (torch.stack([-w, -h, w, h]) / 2).round()
            anchors.append(base + torch.tensor([column * stride, row * stride] * 2, dtype=torch.float32))
    return torch.stack(anchors) if anchors else torch.zeros(0, 4)


@pytest.mark.parametrize("row,column,sizes,ratios,stride", [
    (5, 9, (32, 64, 128), (0.5, 1.0, 2.0), 16),
    (0, 0, (256, 512), (1.0,), 32),
    (31, 2, (32,), (0.5, 2.0), 8),
    (3, 3, (64, 128, 256, 512), (2.0, 0.5), 64),
])
def test_explorer_draws_torchvision_anchors_of_the_chosen_cell(row, column, sizes, ratios, stride):
    explorer = rpn_helpers.AnchorExplorer(IMAGE, row=1, column=1, stride=16)
    explorer.redraw()
    set_controls(explorer, stride=stride, sizes=sizes, aspect_ratios=ratios, row=row, column=column)
    figure = explorer.figure
    ordered_sizes, ordered_ratios = sorted(sizes), sorted(ratios)
    anchors = torch.tensor(drawn_anchors(figure), dtype=torch.float32).reshape(-1, 4)
    assert len(anchors) == len(sizes) * len(ratios)
    expected = torchvision_cell_anchors(IMAGE, row, column, ordered_sizes, ordered_ratios, stride)
    assert torch.equal(anchors, expected)
    assert torch.equal(anchors, formula_cell_anchors(row, column, ordered_sizes, ordered_ratios, stride))
    cell = patch_with_gid(figure, "cell")
    assert cell.get_xy() == (column * stride, row * stride)
    assert (cell.get_width(), cell.get_height()) == (stride, stride)
    (centre,) = [line for line in figure.axes[0].lines if line.get_gid() == "centre"]
    assert (centre.get_xdata()[0], centre.get_ydata()[0]) == (column * stride, row * stride)
    text = caption(figure)
    assert f"= {len(anchors)} anchors" in text
    for x1, y1, x2, y2 in anchors.tolist():
        assert f"{x1:7.0f} {y1:7.0f} {x2:7.0f} {y2:7.0f}" in text


def test_the_grid_has_one_line_per_cell_edge():
    explorer = rpn_helpers.AnchorExplorer(IMAGE, row=0, column=0, stride=32)
    figure = explorer.draw(**explorer.values())
    (grid,) = [c for c in figure.axes[0].collections if c.get_gid() == "grid"]
    xs = sorted({segment[0, 0] for segment in grid.get_segments() if segment[0, 0] == segment[1, 0]})
    assert xs == list(range(0, 257, 32))


def test_a_new_stride_keeps_row_and_column_inside_the_new_grid():
    explorer = rpn_helpers.AnchorExplorer(IMAGE, row=0, column=0, stride=8)
    explorer.redraw()
    set_controls(explorer, row=31, column=30)  # the last row of a 32 x 32 map
    explorer.controls["stride"].value = 64  # 4 x 4 cells
    assert (explorer.controls["row"].max, explorer.controls["column"].max) == (3, 3)
    assert (explorer.controls["row"].value, explorer.controls["column"].value) == (3, 3)
    assert patch_with_gid(explorer.figure, "cell").get_xy() == (192, 192)
    assert "4 x 4 feature map (stride 64)" in explorer.figure.axes[0].get_title()


def test_no_size_or_no_ratio_means_no_anchor():
    explorer = rpn_helpers.AnchorExplorer(IMAGE, stride=16, row=2, column=2)
    explorer.redraw()
    explorer.controls["sizes"].value = ()
    assert drawn_anchors(explorer.figure) == [] and caption(explorer.figure).startswith("k = 0")
    set_controls(explorer, sizes=(64,), aspect_ratios=())
    assert drawn_anchors(explorer.figure) == []


def test_border_crossing_anchors_are_marked_in_the_caption():
    explorer = rpn_helpers.AnchorExplorer(IMAGE, row=0, column=0, sizes=(32, 64), aspect_ratios=(1.0,), stride=16)
    figure = explorer.draw(**explorer.values())
    text = caption(figure)  # every anchor centred on the image's corner (0, 0) crosses its border
    assert "crosses the image border: 2 of 2" in text


def test_a_stride_that_does_not_divide_the_image_is_refused():
    with pytest.raises(ValueError, match="stride must divide"):
        rpn_helpers.AnchorExplorer(make_scene(seed=0, size=200)[0], stride=16)


def test_explorer_shows_one_static_figure_while_the_book_builds(monkeypatch):
    explorer = rpn_helpers.AnchorExplorer()  # the chapter's default: an 800 x 800 scene, stride 16
    shown = shown_statically(monkeypatch, explorer.show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)
    assert len(drawn_anchors(shown[0])) == 9
    assert "50 x 50 feature map (stride 16)" in shown[0].axes[0].get_title()


def small_rpn(seed: int = 0) -> tuple[torch.nn.Module, RegionProposalNetwork]:
    torch.manual_seed(seed)
    backbone = rpn_helpers.tiny_backbone(seed)
    head = RPNHead(64, 9)
    rpn = RegionProposalNetwork(AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)), head, 0.7, 0.3, 64, 0.5,
                                dict(training=50, testing=200), dict(training=50, testing=100), 0.7)
    return backbone, rpn


def test_tiny_backbone_has_stride_8_and_leaves_the_global_generator_alone():
    before = torch.random.get_rng_state()
    backbone = rpn_helpers.tiny_backbone(seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert backbone.eval()(torch.zeros(2, 3, 64, 96)).shape == (2, 64, 8, 12)
    again = rpn_helpers.tiny_backbone(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(backbone.state_dict().values(), again.state_dict().values()))


def test_propose_returns_what_region_proposal_network_proposes():
    backbone, rpn = small_rpn()
    data = SyntheticShapes(3, size=64, seed=4)
    images = torch.stack([data[i][0] for i in range(3)])
    boxes, scores, objectness = rpn_helpers.propose(backbone, rpn, images)
    with torch.no_grad():
        expected, _ = rpn(rpn_helpers.image_list(images), {"0": backbone(images)})
    assert len(boxes) == len(scores) == 3
    for mine, theirs, score in zip(boxes, expected, scores):
        assert torch.equal(mine, theirs)
        assert len(score) == len(mine) and (score[:-1] >= score[1:]).all()  # best first
        assert ((score > 0) & (score < 1)).all()
    assert objectness.shape == (3, 9, 8, 8)
    with torch.no_grad():
        logits, _ = rpn.head([backbone(images)])
    assert torch.equal(objectness, logits[0])


def test_train_rpn_records_torchvision_losses_learns_and_is_repeatable():
    data = [make_scene(seed=0, index=i, size=64) for i in range(6)]
    backbone, rpn = small_rpn()
    # The first step's losses, computed here the way train_rpn draws its batch and its sample.
    chosen = torch.randint(len(data), (2,), generator=torch.Generator().manual_seed(7)).tolist()
    images = torch.stack([data[i][0] for i in chosen])
    targets = [{"boxes": data[i][1]["boxes"]} for i in chosen]
    torch.manual_seed(7)
    backbone.train()
    rpn.train()
    state = {k: v.clone() for k, v in backbone.state_dict().items()}  # this forward pass moves batch-norm statistics
    _, first = rpn(rpn_helpers.image_list(images), {"0": backbone(images)}, targets)
    backbone.load_state_dict(state)

    history = rpn_helpers.train_rpn(backbone, rpn, data, steps=5, batch_size=2, lr=1e-2, seed=7)
    assert history.shape == (5, 2) and history.dtype == np.float64 and np.isfinite(history).all()
    assert history[0] == pytest.approx([first["loss_objectness"].item(), first["loss_rpn_box_reg"].item()])
    assert history[0, 0] == pytest.approx(math.log(2), abs=0.01)  # an untrained head: logits near 0
    assert history[-1, 0] < history[0, 0]
    assert backbone.training and rpn.training

    backbone_again, rpn_again = small_rpn()
    again = rpn_helpers.train_rpn(backbone_again, rpn_again, data, steps=5, batch_size=2, lr=1e-2, seed=7)
    assert np.array_equal(history, again)


def test_feature_pyramid_figure_draws_four_backbone_and_five_pyramid_levels():
    figure = Figure()
    ax = figure.subplots()
    rpn_helpers.draw_feature_pyramid(ax, anchor_sizes=(8, 16, 32, 64, 128))
    texts = [t.get_text() for t in ax.texts]
    assert [f"P{level}" for level in range(2, 7)] == [t for t in texts if t.startswith("P")]
    assert sum(t.startswith("C") for t in texts) == 4
    assert any("128$^2$ anchors" in t for t in texts)
