"""Chapter 7's helpers (odcourse.transconv): the convolution matrix agrees with torch's conv2d and
conv_transpose2d, the bilinear weight with F.interpolate, and the explorer highlights exactly the
cells autograd says are connected."""
import itertools

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from odcourse import transconv
from tests.explorers import set_controls, shown_statically

matplotlib.use("Agg")

TOLERANCE = 1e-10  # float64 throughout: sums of a few dozen products of numbers of order 1


def drawn(figure: Figure, prefix: str) -> set[tuple[int, int]]:
    """The (a, b) of every Rectangle on the figure whose gid is f"{prefix}-a-b"."""
    found = set()
    for ax in figure.axes:
        for patch in ax.patches:
            gid = patch.get_gid() or ""
            if isinstance(patch, Rectangle) and gid.startswith(prefix + "-"):
                found.add(tuple(map(int, gid[len(prefix) + 1:].split("-"))))
    return found


def cells_feeding(input_size: int, kernel_size: int, stride: int, padding: int, row: int, col: int) -> set:
    """Independent oracle: the input cells whose gradient is nonzero for output (row, col) of conv2d."""
    image = torch.rand(1, 1, input_size, input_size, dtype=torch.float64, requires_grad=True)
    kernel = torch.ones(1, 1, kernel_size, kernel_size, dtype=torch.float64)  # no zero weights to hide a tap
    out = F.conv2d(image, kernel, stride=stride, padding=padding)
    grad, = torch.autograd.grad(out[0, 0, row, col], image)
    return {tuple(cell) for cell in torch.nonzero(grad[0, 0]).tolist()}


def test_slides_worked_example():
    image, kernel = transconv.slides_example()
    matrix = transconv.convolution_matrix(kernel, 4)
    assert matrix.shape == (4, 16) and matrix.dtype == torch.float64
    assert (matrix @ image.flatten()).reshape(2, 2).tolist() == [[122, 148], [126, 134]]
    # Row 0 of C is the kernel's rows laid along the flattened input, a zero between them.
    assert matrix[0].tolist() == [1, 4, 1, 0, 1, 4, 3, 0, 3, 3, 1, 0, 0, 0, 0, 0]
    assert F.conv2d(image[None, None], kernel[None, None]).reshape(-1).tolist() == [122, 148, 126, 134]


@pytest.mark.parametrize("size,kernel_size,stride,padding", [(4, 3, 1, 0), (5, 3, 2, 1), (7, 2, 3, 0),
                                                             ((6, 4), 3, 2, 2), (3, 1, 1, 2), (6, 4, 2, 1)])
def test_convolution_matrix_is_conv2d_and_its_transpose_is_conv_transpose2d(size, kernel_size, stride, padding):
    generator = torch.Generator().manual_seed(0)
    height, width = (size, size) if isinstance(size, int) else size
    kernel = torch.randn(kernel_size, kernel_size, generator=generator, dtype=torch.float64)
    image = torch.randn(height, width, generator=generator, dtype=torch.float64)
    matrix = transconv.convolution_matrix(kernel, size, stride, padding)
    expected = F.conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding)[0, 0]
    out_h = transconv.conv_output_size(height, kernel_size, stride, padding)
    out_w = transconv.conv_output_size(width, kernel_size, stride, padding)
    assert expected.shape == (out_h, out_w) and matrix.shape == (out_h * out_w, height * width)
    torch.testing.assert_close(matrix @ image.flatten(), expected.flatten(), rtol=0, atol=TOLERANCE)

    small = torch.randn(out_h, out_w, generator=generator, dtype=torch.float64)
    # The rows of C left over by the stride are what output_padding restores.
    extra = ((height + 2 * padding - kernel_size) % stride, (width + 2 * padding - kernel_size) % stride)
    back = F.conv_transpose2d(small[None, None], kernel[None, None], stride=stride, padding=padding,
                              output_padding=extra)[0, 0]
    assert back.shape == (height, width)
    assert transconv.transposed_output_size(out_h, kernel_size, stride, padding, extra[0]) == height
    torch.testing.assert_close(matrix.T @ small.flatten(), back.flatten(), rtol=0, atol=TOLERANCE)


def test_convolution_matrix_refuses_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        transconv.convolution_matrix(torch.ones(4, 4), 3)


@pytest.mark.parametrize("input_size,kernel_size,stride,padding", [(3, 3, 2, 0), (4, 4, 2, 1), (3, 2, 2, 0),
                                                                   (4, 5, 3, 1)])
def test_kernel_overlap_count_is_conv_transpose2d_of_ones(input_size, kernel_size, stride, padding):
    counts = transconv.kernel_overlap_count(input_size, kernel_size, stride, padding)
    ones = torch.ones(1, 1, input_size, input_size, dtype=torch.float64)
    expected = F.conv_transpose2d(ones, torch.ones(1, 1, kernel_size, kernel_size, dtype=torch.float64),
                                  stride=stride, padding=padding)[0, 0]
    assert counts.dtype == torch.int64 and counts.tolist() == expected.long().tolist()


def test_overlap_counts_make_a_checkerboard_only_when_stride_does_not_divide_kernel():
    assert set(transconv.kernel_overlap_count(4, 3, 2)[1:-1, 1:-1].unique().tolist()) == {1, 2, 4}
    assert transconv.kernel_overlap_count(4, 4, 2, 1)[1:-1, 1:-1].unique().tolist() == [4]
    assert transconv.kernel_overlap_count(4, 2, 2).unique().tolist() == [1]


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_weight_upsamples_like_interpolate_away_from_the_border(factor):
    generator = torch.Generator().manual_seed(factor)
    image = torch.rand(2, 3, 6, 5, generator=generator, dtype=torch.float64)
    weight = transconv.bilinear_upsampling_weight(3, 3, 2 * factor)
    assert weight.shape == (3, 3, 2 * factor, 2 * factor) and weight.dtype == torch.float32
    up = F.conv_transpose2d(image, weight.double(), stride=factor, padding=factor // 2)
    expected = F.interpolate(image, scale_factor=factor, mode="bilinear", align_corners=False)
    assert up.shape == expected.shape == (2, 3, 6 * factor, 5 * factor)
    band = factor // 2  # the outer pixels, where interpolate repeats the border and the layer sees zeros
    torch.testing.assert_close(up[..., band:-band, band:-band], expected[..., band:-band, band:-band],
                               rtol=0, atol=1e-6)  # the weights are float32
    assert (up[..., 0, :] - expected[..., 0, :]).abs().max() > 0.01


def test_bilinear_weight_values_and_channels():
    weight = transconv.bilinear_upsampling_weight(2, 3, 4)
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(weight[0, 0], tent[:, None] * tent[None, :])
    torch.testing.assert_close(weight[1, 1], weight[0, 0])
    off_diagonal = [weight[i, o] for i in range(2) for o in range(3) if i != o]
    assert all(w.abs().max() == 0 for w in off_diagonal)
    odd = transconv.bilinear_upsampling_weight(1, 1, 3)[0, 0]  # f = 2, centre 1
    torch.testing.assert_close(odd, torch.tensor([0.5, 1.0, 0.5])[:, None] * torch.tensor([0.5, 1.0, 0.5]))


@pytest.mark.parametrize("input_size,kernel_size,stride,padding,row,col", [
    (4, 3, 1, 0, 1, 1), (6, 3, 2, 1, 2, 0), (7, 4, 3, 2, 1, 2), (5, 3, 1, 2, 0, 6)])
@pytest.mark.parametrize("mode", ["convolution", "transposed"])
def test_explorer_highlights_the_cells_autograd_connects(input_size, kernel_size, stride, padding, row, col, mode):
    explorer = transconv.ConvMatrixExplorer(input_size=input_size, kernel_size=kernel_size)
    set_controls(explorer, stride=stride, padding=padding, mode=mode, row=row, col=col)
    figure = explorer.figure
    expected = cells_feeding(input_size, kernel_size, stride, padding, row, col)
    assert expected  # every chosen cell reads at least one real input cell
    assert drawn(figure, "highlight") == expected
    assert drawn(figure, "selected") == {(row, col)}
    small = transconv.conv_output_size(input_size, kernel_size, stride, padding)
    flat = {i * input_size + j for i, j in expected}
    if mode == "convolution":  # the nonzero entries of row r of C
        assert drawn(figure, "entry") == {(row * small + col, n) for n in flat}
    else:  # the nonzero entries of column r of C.T
        assert drawn(figure, "entry") == {(n, row * small + col) for n in flat}


def test_explorer_writes_the_slides_output_and_keeps_the_cell_inside_the_map():
    explorer = transconv.ConvMatrixExplorer(row=1, col=1)
    figure = explorer.redraw()
    written = [t.get_text() for t in figure.axes[2].texts]
    assert written == ["122", "148", "126", "134"]
    set_controls(explorer, stride=2)  # 4 x 4, 3 x 3, stride 2: a 1 x 1 output, the cell moves to (0, 0)
    assert explorer.controls["row"].value == 0 and explorer.controls["row"].max == 0
    assert drawn(explorer.figure, "selected") == {(0, 0)}
    set_controls(explorer, stride=1, input_size=7)
    assert explorer.controls["col"].max == 4


def test_explorer_says_when_the_kernel_does_not_fit_and_shows_one_static_figure(monkeypatch):
    explorer = transconv.ConvMatrixExplorer(input_size=3, kernel_size=4, padding=0)
    figure = explorer.redraw()
    assert any(t.get_gid() == "invalid" for ax in figure.axes for t in ax.texts)
    shown = shown_statically(monkeypatch, transconv.ConvMatrixExplorer().show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)


def test_examples_are_fixed_and_nonzero():
    for size in range(1, 5):
        kernel = transconv.example_kernel(size)
        assert kernel.shape == (size, size) and (kernel != 0).all() and torch.equal(kernel, transconv.example_kernel(size))
    for size in range(3, 8):
        image = transconv.example_input(size)
        assert image.shape == (size, size) and torch.equal(image, image.round())
    assert list(itertools.chain(*transconv.example_input(4).tolist()))[:4] == [4, 5, 8, 7]
