"""Chapter 4's helpers (odcourse.roipool): the ROI pooling explorer draws what torchvision's
roi_pool does, and the section and switch helpers agree with torchvision and PyTorch."""
import matplotlib
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch.nn.functional import adaptive_max_pool2d
from torchvision.ops import roi_pool

from odcourse import roipool
from tests.explorers import shown_statically

matplotlib.use("Agg")


def patches_by_gid(figure: Figure, prefix: str, axes: int = 0) -> dict[str, Rectangle]:
    return {p.get_gid(): p for p in figure.axes[axes].patches if (p.get_gid() or "").startswith(prefix)}


def cell_of(patch: Rectangle) -> tuple[int, int]:
    """(row, column) of the grid cell a highlight rectangle sits in."""
    x, y = patch.get_xy()
    return round(y + patch.get_height() / 2), round(x + patch.get_width() / 2)


def written(figure: Figure, axes: int) -> dict[str, str]:
    return {t.get_gid(): t.get_text() for t in figure.axes[axes].texts if (t.get_gid() or "").startswith("value-")}


def torchvision_pool(feature, box, output_size, scale):
    rois = torch.tensor([[0.0, *box]], dtype=torch.float32)
    return roi_pool(feature[None, None], rois, output_size, scale)[0, 0]


def test_highlighted_cells_hold_the_values_roi_pool_returns():
    feature = roipool.example_feature_map()
    explorer = roipool.RoIPoolExplorer(feature)
    explorer.redraw()
    cases = [  # (x1, y1, x2, y2, output size, spatial scale): controls as a student would set them
        (2.0, 26.0, 51.0, 58.0, 2, 0.125), (4.5, 3.0, 27.5, 30.0, 3, 0.25), (0.0, 0.0, 7.0, 7.0, 7, 1.0),
        (10.0, 20.0, 60.0, 22.0, 4, 0.125), (1.0, 1.0, 3.0, 5.0, 5, 0.5)]
    for x1, y1, x2, y2, size, scale in cases:
        for name, value in zip(["x1", "y1", "x2", "y2", "output_size", "spatial_scale"], [x1, y1, x2, y2, size, scale]):
            explorer.controls[name].value = value
        figure = explorer.figure
        expected = torchvision_pool(feature, (x1, y1, x2, y2), size, scale)
        highlights = patches_by_gid(figure, "max-")
        assert len(highlights) == size * size
        for i in range(size):
            for j in range(size):
                row, column = cell_of(highlights[f"max-{i}-{j}"])
                assert feature[row, column] == expected[i, j]
        output_texts = written(figure, axes=1)
        assert [output_texts[f"value-{i}-{j}"] for i in range(size) for j in range(size)] == \
            [f"{v:.2f}" for v in expected.flatten().tolist()]


def test_one_section_outline_per_output_and_the_quantised_box_at_the_rounded_cells():
    explorer = roipool.RoIPoolExplorer(roipool.example_feature_map(), x1=2.0, y1=26.0, x2=51.0, y2=58.0)
    for size in (1, 2, 3, 5):
        explorer.controls["output_size"].value = size
        assert len(patches_by_gid(explorer.figure, "section-")) == size * size
        assert len(patches_by_gid(explorer.figure, "output-", axes=1)) == size * size
    # (2, 26, 51, 58) px at scale 1/8 = (0.25, 3.25, 6.375, 7.25) cells: columns 0..6, rows 3..7.
    quantised = patches_by_gid(explorer.figure, "quantised")["quantised"]
    assert quantised.get_xy() == (pytest.approx(-0.5), pytest.approx(2.5))
    assert (quantised.get_width(), quantised.get_height()) == (pytest.approx(7), pytest.approx(5))
    box = patches_by_gid(explorer.figure, "box")["box"]
    assert box.get_xy() == (pytest.approx(0.25), pytest.approx(3.25))
    assert (box.get_width(), box.get_height()) == (pytest.approx(6.125), pytest.approx(4.0))
    # Halves round away from zero, as C's round() in torchvision's kernel: 20 / 8 = 2.5 -> cell 3.
    explorer.controls["x1"].value = 20.0
    assert patches_by_gid(explorer.figure, "quantised")["quantised"].get_xy()[0] == pytest.approx(2.5)


def test_sections_outside_the_map_are_empty_and_not_drawn():
    feature = roipool.example_feature_map()
    explorer = roipool.RoIPoolExplorer(feature, x1=40.0, y1=40.0, x2=60.0, y2=60.0, output_size=3,
                                       spatial_scale=0.25)  # cells 10..15: wholly outside the 8 x 8 map
    figure = explorer.redraw()
    assert patches_by_gid(figure, "section-") == {} and patches_by_gid(figure, "max-") == {}
    assert set(written(figure, axes=1).values()) == {"0.00"}
    assert "9 empty sections" in figure.axes[0].get_title()


def test_explorer_shows_one_static_figure_while_the_book_builds(monkeypatch):
    shown = shown_statically(monkeypatch, roipool.RoIPoolExplorer(output_size=3).show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)


def test_quantise_box_and_sections_match_torchvision_on_many_boxes():
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        height, width = torch.randint(2, 11, (2,), generator=generator).tolist()
        feature = torch.randperm(height * width, generator=generator).float().reshape(height, width)
        scale = [1.0, 0.5, 0.25, 1 / 3][int(torch.randint(4, (1,), generator=generator))]
        corners = (torch.rand(4, generator=generator) * 1.4 - 0.2) * torch.tensor([width, height] * 2) / scale
        corners = (corners * 2).round() / 2  # halves included, where rounding matters
        box = [min(corners[0], corners[2]), min(corners[1], corners[3]), max(corners[0], corners[2]),
               max(corners[1], corners[3])]
        box = [float(v) for v in box]
        size = int(torch.randint(1, 6, (1,), generator=generator))
        first_x, first_y, last_x, last_y = roipool.quantise_box(box, scale)
        rows = roipool.roi_sections(first_y, last_y, size, height)
        columns = roipool.roi_sections(first_x, last_x, size, width)
        expected = torchvision_pool(feature, box, size, scale)
        for i, (top, bottom) in enumerate(rows):
            for j, (left, right) in enumerate(columns):
                section = feature[top:bottom, left:right]
                assert expected[i, j] == (section.max() if section.numel() else 0.0), (box, scale, size)


def test_pooling_switches_point_at_the_pooled_values():
    feature = roipool.example_feature_map()
    box, size, scale = (2.0, 26.0, 51.0, 58.0), 2, 0.125
    switches = roipool.pooling_switches(feature, box, size, scale)
    assert switches.shape == (2, 2, 2) and switches.dtype == torch.int64
    expected = torchvision_pool(feature, box, size, scale)
    assert torch.equal(feature[switches[..., 0], switches[..., 1]], expected)
    # Rows 3..7 in two sections overlap at row 5, where 0.94 is the maximum of both left sections.
    assert switches[0, 0].tolist() == switches[1, 0].tolist() == [5, 2]
    empty = roipool.pooling_switches(feature, (100.0, 100.0, 120.0, 120.0), 2, 0.125)
    assert (empty == -1).all()


def test_adaptive_sections_are_pytorchs_adaptive_pooling_bins():
    for length in range(1, 14):
        for sections in range(1, 8):
            values = torch.randperm(length).float()[None, None, None]  # [1, 1, 1, length]
            pooled = adaptive_max_pool2d(values, (1, sections))[0, 0, 0]
            bins = roipool.adaptive_sections(length, sections)
            assert [float(values[0, 0, 0, a:b].max()) for a, b in bins] == pooled.tolist()
            assert set(range(length)) == {c for a, b in bins for c in range(a, b)}  # no cell is missed


def test_round_half_away_and_example_map():
    assert [roipool.round_half_away(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5, 2.49)] == [1, 2, 3, -1, -3, 2]
    feature = roipool.example_feature_map(8, seed=0)
    assert feature.shape == (8, 8) and feature.dtype == torch.float32
    assert len(feature.unique()) == 64 and torch.equal(feature, roipool.example_feature_map(8, seed=0))
    with pytest.raises(ValueError):
        roipool.example_feature_map(11)
