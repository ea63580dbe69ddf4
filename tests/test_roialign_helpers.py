"""Chapter 6's helpers (odcourse.roialign): the explorer draws torchvision's sampling points, values
and bins, and the geometry helpers follow torchvision's ROI Align and ROI pooling."""
import itertools

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.ops import roi_align, roi_pool

from odcourse import roialign
from tests.explorers import set_controls, shown_statically

matplotlib.use("Agg")


def samples_by_bin(figure: Figure) -> dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]:
    """(points float[n, 2] in edge coordinates, values float[n]) of each ROI Align bin drawn."""
    found = {}
    for collection in figure.axes[0].collections:
        gid = collection.get_gid() or ""
        if gid.startswith("align-samples-"):
            p, q = map(int, gid.rsplit("-", 2)[1:])
            found[p, q] = (torch.tensor(collection.get_offsets().data), torch.tensor(collection.get_array().data))
    return found


def pool_rectangles(figure: Figure) -> dict[tuple[int, int], list[int]]:
    """(col_start, row_start, col_end, row_end) of each ROI pooling bin drawn."""
    found = {}
    for patch in figure.axes[1].patches:
        gid = patch.get_gid() or ""
        if isinstance(patch, Rectangle) and gid.startswith("pool-bin-"):
            p, q = map(int, gid.rsplit("-", 2)[1:])
            x, y = patch.get_xy()
            found[p, q] = [round(x), round(y), round(x + patch.get_width()), round(y + patch.get_height())]
    return found


def drawn_outputs(figure: Figure, axes_index: int) -> list[float]:
    return [float(t.get_text()) for t in figure.axes[axes_index].texts if t.get_gid() == "output"]


def sorted_points(points: torch.Tensor) -> list[float]:
    """Points float[n, 2] sorted by (x, y), flattened to x0, y0, x1, y1, ..."""
    return [v for point in sorted(map(tuple, points.tolist())) for v in point]


@pytest.mark.parametrize("output_size,sampling_ratio,aligned", [(2, 2, True), (3, 1, False), (4, 3, True),
                                                                (1, 2, False)])
def test_explorer_draws_ratio_squared_samples_per_bin_whose_mean_is_roi_align(output_size, sampling_ratio, aligned):
    explorer = roialign.RoIAlignExplorer()
    explorer.redraw()
    set_controls(explorer, x1=0.7, y1=1.2, x2=6.3, y2=5.5, output_size=output_size,
                 sampling_ratio=sampling_ratio, aligned=aligned)
    figure = explorer.figure
    bins = samples_by_bin(figure)
    assert sorted(bins) == list(itertools.product(range(output_size), repeat=2))
    assert sum(len(values) for _, values in bins.values()) == output_size ** 2 * sampling_ratio ** 2
    expected = roi_align(explorer.feature_map[None, None], torch.tensor([[0, 0.7, 1.2, 6.3, 5.5]]), output_size,
                         1.0, sampling_ratio, aligned)[0, 0]
    for (p, q), (_, values) in bins.items():
        assert values.mean().item() == pytest.approx(expected[p, q].item(), abs=1e-4)
    assert drawn_outputs(figure, 2) == pytest.approx(expected.reshape(-1).tolist(), abs=0.006)


def test_explorer_sample_points_sit_where_torchvision_samples():
    # aligned=True, box (1, 1)-(5, 3), 2 x 2 bins, 2 x 2 samples: bins are 2 x 1 cells, samples at
    # a quarter and three quarters of each bin, in edge coordinates.
    explorer = roialign.RoIAlignExplorer(x1=1.0, y1=1.0, x2=5.0, y2=3.0, output_size=2, sampling_ratio=2, aligned=True)
    points, _ = samples_by_bin(explorer.redraw())[0, 1]
    assert sorted_points(points) == pytest.approx([3.5, 1.25, 3.5, 1.75, 4.5, 1.25, 4.5, 1.75])
    set_controls(explorer, aligned=False)  # the same box read half a cell right and down
    points, _ = samples_by_bin(explorer.figure)[0, 1]
    assert sorted_points(points) == pytest.approx([4.0, 1.75, 4.0, 2.25, 5.0, 1.75, 5.0, 2.25])


def test_adaptive_sampling_uses_ceil_of_bin_size():
    explorer = roialign.RoIAlignExplorer(x1=0.5, y1=0.5, x2=7.5, y2=3.0, output_size=2, sampling_ratio=-1, aligned=True)
    bins = samples_by_bin(explorer.redraw())
    # width 7 / 2 bins -> ceil(3.5) = 4 columns of samples; height 2.5 / 2 -> ceil(1.25) = 2 rows
    assert {len(values) for _, values in bins.values()} == {8}
    expected = roi_align(explorer.feature_map[None, None], torch.tensor([[0, 0.5, 0.5, 7.5, 3.0]]), 2, 1.0, -1, True)
    assert [bins[p, q][1].mean().item() for p in range(2) for q in range(2)] == pytest.approx(
        expected.reshape(-1).tolist(), abs=1e-4)


@pytest.mark.parametrize("box,output_size", [((1.3, 0.7, 5.6, 4.9), 2), ((0.5, 0.5, 2.5, 7.4), 3),
                                             ((2.2, 3.6, 2.4, 3.9), 2), ((0.0, 0.0, 8.0, 8.0), 4)])
def test_explorer_pool_bins_hold_the_maxima_that_roi_pool_returns(box, output_size):
    explorer = roialign.RoIAlignExplorer(x1=box[0], y1=box[1], x2=box[2], y2=box[3], output_size=output_size)
    figure = explorer.redraw()
    expected = roi_pool(explorer.feature_map[None, None], torch.tensor([[0.0, *box]]), output_size, 1.0)[0, 0]
    rectangles = pool_rectangles(figure)
    for p, q in itertools.product(range(output_size), repeat=2):
        if (p, q) in rectangles:
            c0, r0, c1, r1 = rectangles[p, q]
            assert explorer.feature_map[r0:r1, c0:c1].max().item() == expected[p, q].item()
        else:
            assert expected[p, q].item() == 0  # an empty bin
    assert drawn_outputs(figure, 3) == pytest.approx(expected.reshape(-1).tolist())


def test_explorer_puts_box_corners_in_order_and_shows_one_static_figure(monkeypatch):
    explorer = roialign.RoIAlignExplorer(x1=5.0, y1=4.0, x2=1.0, y2=2.0)
    assert explorer.box(**{k: explorer.values()[k] for k in ("x1", "y1", "x2", "y2")}) == [1.0, 2.0, 5.0, 4.0]
    shown = shown_statically(monkeypatch, explorer.show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)


def test_values_at_follows_torchvisions_bilinear_rules():
    feature = torch.arange(1.0, 17.0).reshape(4, 4)  # value 4 i + j + 1 at cell (i, j)
    xs = torch.tensor([0.0, 0.5, 0.3, -0.5, -1.0, -1.2, 3.5, 4.0, 4.1, 1.0])
    ys = torch.tensor([0.0, 0.0, 0.65, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 3.6])
    got = roialign.values_at(feature, xs, ys)
    expected = [1.0, 1.5, 1 + 4 * 0.65 + 0.3,
                9.0,   # x in [-1, 0]: clamped to column 0
                5.0,   # x = -1 exactly still counts
                0.0,   # x < -1: outside, 0
                12.0,  # beyond the last column's centre: the last column
                8.0,   # x = W is still inside
                0.0,   # x > W: 0
                14.0]  # y between the last row's centre and H: the last row
    assert got.tolist() == pytest.approx(expected, abs=1e-5)
    assert roialign.values_at(feature, torch.zeros(0), torch.zeros(0)).shape == (0,)


def test_sampling_grid_and_region_follow_torchvision():
    ys, xs = roialign.align_sampling_grid([32.0, 16.0, 96.0, 80.0], 2, spatial_scale=1 / 16, sampling_ratio=2,
                                          aligned=True)
    # Box (2, 1)-(6, 5) cells, minus half a cell: starts at (1.5, 0.5), bins of 2 cells, samples at 1/4, 3/4.
    assert xs.reshape(-1).tolist() == pytest.approx([2.0, 3.0, 4.0, 5.0]) and xs.shape == (2, 2)
    assert ys.reshape(-1).tolist() == pytest.approx([1.0, 2.0, 3.0, 4.0]) and ys.shape == (2, 2)
    assert roialign.align_region([2.0, 2.0, 2.3, 2.2]) == pytest.approx((2.0, 2.0, 1.0, 1.0))  # at least 1 cell
    assert roialign.align_region([2.0, 2.0, 2.3, 2.2], aligned=True) == pytest.approx((1.5, 1.5, 0.3, 0.2))
    ys, xs = roialign.align_sampling_grid([0.0, 0.0, 7.0, 2.0], 3, sampling_ratio=-1)
    assert xs.shape == (3, 3) and ys.shape == (3, 1)  # ceil(7 / 3) = 3, ceil(2 / 3) = 1


def test_pool_bins_round_corners_and_split_regions_like_roi_pool():
    bins = roialign.pool_bins([0.5, 0.4, 2.5, 2.6], 2, height=8, width=8)
    # x: round(0.5) = 1 .. round(2.5) = 3 -> 3 cells in 2 bins: [1, 3) and [2, 4), overlapping.
    # y: round(0.4) = 0 .. round(2.6) = 3 -> 4 cells: [0, 2) and [2, 4).
    assert bins[0, 0].tolist() == [1, 0, 3, 2] and bins[1, 1].tolist() == [2, 2, 4, 4]
    feature = roialign.example_feature_map()
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        corner = torch.rand(2, generator=generator) * 6
        size = torch.rand(2, generator=generator) * 4
        box = torch.cat([corner, corner + size]) * 16
        bins = roialign.pool_bins(box.tolist(), 3, 8, 8, spatial_scale=1 / 16)
        expected = roi_pool(feature[None, None], torch.cat([torch.zeros(1), box])[None], 3, 1 / 16)[0, 0]
        for p, q in itertools.product(range(3), repeat=2):
            c0, r0, c1, r1 = bins[p, q].tolist()
            value = feature[r0:r1, c0:c1].max().item() if c1 > c0 and r1 > r0 else 0.0
            assert value == expected[p, q].item()


def test_example_feature_map_is_fixed():
    a, b = roialign.example_feature_map(), roialign.example_feature_map()
    assert a.shape == (8, 8) and a.dtype == torch.float32 and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 9 and torch.equal(a, a.round())
