"""Proofs for a07-transposed-conv: the reference equals PyTorch (conv2d's input Jacobian for the
convolution matrix, conv2d, conv_transpose2d forward and gradients, bilinear interpolation for the
bilinear kernel) and the slides' worked example; plausible wrong answers lose points on the test
that names the mistake; right answers written differently (loops over kernel taps, zero insertion
and a convolution of the flipped kernel, gathers by index) earn full marks."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from coursetools.reference import load_reference
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together

ASSIGNMENT = "a07-transposed-conv"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=80, deadline=None, database=None)
SLIDE_INPUT = torch.tensor([[4.0, 5, 8, 7], [1, 8, 8, 8], [3, 6, 6, 4], [6, 5, 7, 8]])
SLIDE_KERNEL = torch.tensor([[1.0, 4, 1], [1, 4, 3], [3, 3, 1]])


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def conv2d_jacobian(kernel, size, stride, padding):
    """float64[Ho*Wo, H*W]: d conv2d(x).flatten() / d x.flatten(), the convolution's own matrix."""
    def convolve(flat):
        return F.conv2d(flat.reshape(1, 1, *size), kernel[None, None], stride=stride, padding=padding).reshape(-1)
    return torch.autograd.functional.jacobian(convolve, torch.zeros(size[0] * size[1], dtype=kernel.dtype))


def test_slides_worked_example():
    matrix = REF.conv_matrix(SLIDE_KERNEL, 4)
    assert matrix.shape == (4, 16)
    assert (matrix @ SLIDE_INPUT.reshape(16)).tolist() == [122.0, 148.0, 126.0, 134.0]
    assert F.conv2d(SLIDE_INPUT[None, None], SLIDE_KERNEL[None, None]).reshape(-1).tolist() == [122, 148, 126, 134]
    # Row 0 of the slides' C: the kernel's rows at input cells 0-2, 4-6 and 8-10.
    assert matrix[0].tolist() == [1, 4, 1, 0, 1, 4, 3, 0, 3, 3, 1, 0, 0, 0, 0, 0]
    back = REF.conv_transpose2d(torch.tensor([[[[122.0, 148], [126, 134]]]]), SLIDE_KERNEL[None, None])
    assert torch.equal(back.reshape(16), matrix.t() @ torch.tensor([122.0, 148, 126, 134]))


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 4), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9),
       st.sampled_from([1, 2, 3, (1, 2), (3, 1)]), st.sampled_from([0, 1, 2, (0, 1), (2, 0)]))
def test_conv_matrix_equals_conv2ds_jacobian(seed, kh, kw, h, w, stride, padding):
    ph, pw = pair(padding)
    h, w = max(h, kh - 2 * ph), max(w, kw - 2 * pw)
    kernel = torch.randn(kh, kw, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert torch.equal(REF.conv_matrix(kernel, (h, w), stride, padding), conv2d_jacobian(kernel, (h, w), stride, padding))


def test_banned_calls_share_one_list_of_convolutions():
    from autograder import assignment
    spec = assignment.load(ASSIGNMENT)
    functions, banned = spec.functions, spec.banned
    assert set(banned) == set(functions)
    for name in functions:
        assert {"torch.nn.functional.conv2d", "torch.nn.functional.conv_transpose2d", "odcourse"} <= set(banned[name])
    assert "torch.nn.functional.unfold" in banned["conv2d_im2col"]
    assert "torch.nn.functional.fold" not in banned["conv_transpose2d"]  # allowed: the notebook says so


def test_conv_matrix_refuses_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        REF.conv_matrix(torch.ones(4, 2), (3, 5))


def assert_same_values_and_gradients(got, want, inputs, g):
    """Equal outputs, and equal gradients for the same random upstream gradient (None inputs skipped)."""
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-12)
    if got.numel():
        leaves = [t for t in inputs if t is not None]
        upstream = torch.randn(want.shape, generator=g, dtype=torch.float64)
        for a, b in zip(torch.autograd.grad(got, leaves, upstream), torch.autograd.grad(want, leaves, upstream)):
            assert torch.allclose(a, b, atol=1e-12)


CONV = (st.integers(0, 10**6), st.integers(0, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 5),
        st.integers(1, 5), st.integers(5, 11), st.integers(5, 11), st.sampled_from([1, 2, 3, (2, 1), (1, 3)]),
        st.sampled_from([0, 1, 2, (1, 0), (0, 2)]), st.booleans())


@PROPERTY
@given(*CONV)
def test_conv2d_im2col_equals_conv2d_forward_and_gradients(seed, n, c_in, c_out, kh, kw, h, w, stride, padding,
                                                           with_bias):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(c_out, c_in, kh, kw, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    got, want = REF.conv2d_im2col(x, weight, bias, stride, padding), F.conv2d(x, weight, bias, stride, padding)
    assert_same_values_and_gradients(got, want, (x, weight, bias), g)


@PROPERTY
@given(*CONV, st.booleans())
def test_conv_transpose2d_equals_pytorch_forward_and_gradients(seed, n, c_in, c_out, kh, kw, h, w, stride, padding,
                                                               with_bias, extra):
    g = torch.Generator().manual_seed(seed)
    sh, sw = pair(stride)
    output_padding = (sh - 1, sw - 1) if extra else 0
    x = torch.randn(n, c_in, h - 3, w - 3, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(c_in, c_out, kh, kw, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    args = (x, weight, bias, stride, padding, output_padding)
    try:
        want = F.conv_transpose2d(*args)
    except RuntimeError:
        want = None
    # Padding that leaves no output: PyTorch refuses (for no images it returns a map of no cells);
    # the reference refuses.
    if want is None or min(want.shape[2:]) == 0:
        with pytest.raises(RuntimeError):
            REF.conv_transpose2d(*args)
        return
    got = REF.conv_transpose2d(*args)
    assert_same_values_and_gradients(got, want, (x, weight, bias), g)


def test_conv_transpose_is_the_transposed_matrix_and_conv2ds_input_gradient():
    g = torch.Generator().manual_seed(3)
    kernel = torch.randn(3, 4, generator=g, dtype=torch.float64)
    matrix = REF.conv_matrix(kernel, (7, 9), 2, 1)
    values = torch.randn(matrix.shape[0], generator=g, dtype=torch.float64)
    out_h, out_w = 4, 4  # (7 + 2 - 3) // 2 + 1 and (9 + 2 - 4) // 2 + 1
    # Back to 7 x 9: (4 - 1) 2 - 2 + 3 = 7 rows, (4 - 1) 2 - 2 + 4 + 1 = 9 columns with output_padding 1.
    back = REF.conv_transpose2d(values.reshape(1, 1, out_h, out_w), kernel[None, None], None, 2, 1, (0, 1))
    assert torch.allclose(back.reshape(-1), matrix.t() @ values, atol=1e-12)
    x = torch.zeros(1, 1, 7, 9, dtype=torch.float64, requires_grad=True)
    gradient, = torch.autograd.grad(F.conv2d(x, kernel[None, None], stride=2, padding=1), x,
                                    values.reshape(1, 1, out_h, out_w))
    assert torch.allclose(back, gradient, atol=1e-12)


def fcn_upsample_filter(size):
    """The bilinear filter written with numpy's ogrid, as FCN's surgery script computes it."""
    import numpy as np
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return torch.from_numpy((1 - abs(og[0] - centre) / factor) * (1 - abs(og[1] - centre) / factor)).float()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 8, 16, 64])
def test_bilinear_kernel_equals_fcns_filter(size):
    weight = REF.bilinear_kernel(3, 2, size)
    assert weight.shape == (3, 2, size, size) and weight.dtype == torch.float32
    assert torch.allclose(weight[0, 0], fcn_upsample_filter(size)) and torch.allclose(weight[1, 1], weight[0, 0])
    assert not weight[0, 1].any() and not weight[1, 0].any() and not weight[2].any()


@pytest.mark.parametrize("factor", [2, 4, 8, 16])
def test_bilinear_kernel_upsamples_like_bilinear_interpolation_away_from_the_border(factor):
    image = torch.rand(2, 3, 9, 12, generator=torch.Generator().manual_seed(factor), dtype=torch.float64)
    weight = REF.bilinear_kernel(3, 3, 2 * factor).double()
    up = F.conv_transpose2d(image, weight, stride=factor, padding=factor // 2)
    smooth = F.interpolate(image, scale_factor=factor, mode="bilinear", align_corners=False)
    assert up.shape == smooth.shape
    margin = factor // 2  # the outermost f / 2 rows and columns see the zeros beyond the map
    inner = (Ellipsis, slice(margin, -margin), slice(margin, -margin))
    assert torch.allclose(up[inner], smooth[inner], atol=1e-12)
    assert not torch.allclose(up, smooth, atol=1e-3)


# Wrong answers lose points where their mistake is named -----------------------------------------

MATRIX = '''
def conv_matrix(kernel, input_size, stride=1, padding=0):
    H, W = pair(input_size)
    kh, kw = kernel.shape
    sh, sw = {stride}
    ph, pw = pair(padding)
    Ho, Wo = {out_size}
    if Ho < 1 or Wo < 1:
        raise ValueError("the kernel does not fit")
    kernel = {kernel}
    C = kernel.new_zeros(Ho * Wo, H * W)
    for a in range(kh):
        for b in range(kw):
            i, j = torch.meshgrid(torch.arange(Ho, device=kernel.device), torch.arange(Wo, device=kernel.device),
                                  indexing="ij")
            y, x = i * sh - ph + a, j * sw - pw + b
            ok = {inside}
            rows = (i * Wo + j)[ok]
            cols = (y * {row_length} + x)[ok]
            C = C.index_put((rows, cols), kernel[a, b].expand(len(rows)), accumulate=True)
    return {result}
'''
MATRIX_PARTS = dict(stride="pair(stride)", out_size="(H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1",
                    kernel="kernel", inside="(y >= 0) & (y < H) & (x >= 0) & (x < W)", row_length="W", result="C")


def matrix(**changes):
    return MATRIX.format(**{**MATRIX_PARTS, **changes})


IM2COL = '''
def conv2d_im2col(x, weight, bias=None, stride=1, padding=0):
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    n, c, H, W = x.shape
    o, _, kh, kw = weight.shape
    padded = F.pad(x, {pad})
    Ho, Wo = (padded.shape[2] - kh) // sh + 1, (padded.shape[3] - kw) // sw + 1
    rows = (torch.arange(Ho, device=x.device) * sh)[:, None] + torch.arange(kh, device=x.device)[None, :]
    cols = (torch.arange(Wo, device=x.device) * sw)[:, None] + torch.arange(kw, device=x.device)[None, :]
    windows = padded[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # n, c, Ho, Wo, kh, kw
    columns = windows.permute({order}).reshape(n, Ho * Wo, c * kh * kw)
    out = (columns @ weight.reshape(o, -1).t()).transpose(1, 2).reshape(n, o, Ho, Wo)
    {bias}
    return out
'''
IM2COL_PARTS = dict(pad="(pw, pw, ph, ph)", order="0, 2, 3, 1, 4, 5",
                    bias="if bias is not None:\n        out = out + bias[:, None, None]")


def im2col(**changes):
    return IM2COL.format(**{**IM2COL_PARTS, **changes})


# A student's transposed convolution: zeros between the input cells, a frame of k - 1 - p zeros, and
# their own conv2d_im2col with the flipped, channel-swapped kernel.
TRANSPOSED = '''
def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    oh, ow = {output_padding}
    n, c, H, W = x.shape
    kh, kw = weight.shape[2:]
    spread = x.new_zeros(n, c, (H - 1) * sh + 1, (W - 1) * sw + 1)
    spread[:, :, ::sh, ::sw] = x
    framed = F.pad(spread, ({frame_w}, {frame_w} + ow, {frame_h}, {frame_h} + oh))
    kernel = {kernel}
    out = conv2d_im2col(framed, kernel, bias)
    return {result}
'''
TRANSPOSED_PARTS = dict(output_padding="pair(output_padding)", frame_h="kh - 1 - ph", frame_w="kw - 1 - pw",
                        kernel="weight.flip(2, 3).transpose(0, 1)", result="out")


def transposed(**changes):
    return TRANSPOSED.format(**{**TRANSPOSED_PARTS, **changes})


BILINEAR = '''
def bilinear_kernel(in_channels, out_channels, kernel_size):
    f = {factor}
    c = {centre}
    a = torch.arange(kernel_size).float()
    line = 1 - torch.abs(a - c) / f
    k = torch.outer(line, line)
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size{dtype})
    {fill}
    return weight
'''
BILINEAR_PARTS = dict(factor="math.ceil(kernel_size / 2)",
                      centre="f - 1 if kernel_size % 2 == 1 else f - 0.5", dtype="",
                      fill="for i in range(min(in_channels, out_channels)):\n        weight[i, i] = k")


def bilinear(**changes):
    return "import math\n" + BILINEAR.format(**{**BILINEAR_PARTS, **changes})


WRONG = {
    # conv_matrix
    "the kernel flipped (a textbook convolution)": ("conv-matrix", matrix(kernel="kernel.flip(0, 1)"), "not flipped", ()),
    "stride ignored in the output size": ("conv-matrix", matrix(
        out_size="H + 2 * ph - kh + 1, W + 2 * pw - kw + 1", stride="1, 1"), "H_o = floor((H + 2p - k) / s) + 1", ()),
    "rows flattened with the height": ("conv-matrix", matrix(row_length="H"), "output (i, j) reads input", ()),
    "detached from the kernel": ("conv-matrix", matrix(result="C.detach()"), "build the matrix from kernel's values",
                                 ()),
    "taps on the padding wrapped around": ("conv-matrix", matrix(inside="(y >= 0) & (y < H)"),
                                           "taps on the padding have no column", ()),
    # conv2d_im2col
    "padding on one side only": ("conv2d-im2col", im2col(pad="(pw, 0, ph, 0)"), "pad both sides", ()),
    "columns ordered (row, column, channel)": ("conv2d-im2col", im2col(order="0, 2, 3, 4, 5, 1"),
                                              "in the order of weight.reshape(C_out, -1)", ()),
    "bias forgotten": ("conv2d-im2col", im2col(bias="pass"), "the bias of each filter", ()),
    "a loop over output cells": ("conv2d-im2col", '''
def conv2d_im2col(x, weight, bias=None, stride=1, padding=0):
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    padded = F.pad(x, (pw, pw, ph, ph))
    o, c, kh, kw = weight.shape
    Ho, Wo = (padded.shape[2] - kh) // sh + 1, (padded.shape[3] - kw) // sw + 1
    out = x.new_zeros(x.shape[0], o, Ho, Wo)
    flat = weight.reshape(o, -1)
    for i in range(Ho):
        for j in range(Wo):
            window = padded[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].reshape(x.shape[0], c * kh * kw)
            out[:, :, i, j] = window @ flat.t()
    if bias is not None:
        out = out + bias[:, None, None]
    return out
''', "one matrix product, not a loop over output cells", ()),
    # conv_transpose2d
    "weight read as [out_channels, in_channels]": ("conv-transpose2d", transposed(kernel="weight.flip(2, 3)"),
                                                   "weight is [in_channels, out_channels, kH, kW]", ()),
    "the kernel not flipped": ("conv-transpose2d", transposed(kernel="weight.transpose(0, 1)"),
                               "input (i, j) adds x[c, i, j] weight[c, d, a, b]", ()),
    "padding added instead of removed": ("conv-transpose2d", transposed(frame_h="kh - 1 + ph", frame_w="kw - 1 + pw"),
                                         "H_out = (H - 1) s - 2p + k + output_padding", ()),
    "output_padding ignored": ("conv-transpose2d", transposed(output_padding="0, 0"),
                               "H_out = (H - 1) s - 2p + k + output_padding", ()),
    "result detached from the inputs": ("conv-transpose2d", transposed(result="out.detach()"),
                                        "build the result from x, weight and bias with differentiable operations", ()),
    "F.unfold doing the im2col": ("conv2d-im2col", '''
def conv2d_im2col(x, weight, bias=None, stride=1, padding=0):
    columns = F.unfold(x, weight.shape[2:], padding=padding, stride=stride)
    out = weight.reshape(weight.shape[0], -1) @ columns
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    out_h = (x.shape[2] + 2 * ph - weight.shape[2]) // sh + 1
    out_w = (x.shape[3] + 2 * pw - weight.shape[3]) // sw + 1
    out = out.reshape(x.shape[0], weight.shape[0], out_h, out_w)
    return out if bias is None else out + bias[:, None, None]
''', "torch.nn.functional.unfold, which this exercise does not allow", ()),
    "PyTorch's conv2d on the zero-inserted input": ("conv-transpose2d", transposed().replace(
        "conv2d_im2col(framed, kernel, bias)", "F.conv2d(framed, kernel, bias)"),
        "torch.nn.functional.conv2d, which this exercise does not allow", ()),
    # bilinear_kernel
    "the centre of an even kernel at f - 1": ("bilinear-kernel", bilinear(centre="f - 1"),
                                              "centre f - 1 for odd k, f - 1/2 for even k", ()),
    "the factor k // 2": ("bilinear-kernel", bilinear(factor="max(kernel_size // 2, 1)"), "f = ceil(k / 2)", ()),
    "every channel pair filled": ("bilinear-kernel", bilinear(fill="weight[:, :] = k"), "0 elsewhere", ()),
    "float64 weights": ("bilinear-kernel", bilinear(dtype=", dtype=torch.float64"), "float32", ()),
}

MISTAKES = WRONG
SLOW = ["a loop over output cells"]

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW)


# A transposed convolution by kernel taps: tap (a, b) adds x @ weight[:, :, a, b] at offset (a, b), stride s.
TAPS = '''
def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    oh, ow = pair(output_padding)
    n, c, H, W = x.shape
    d, kh, kw = weight.shape[1:]
    full = x.new_zeros(n, d, (H - 1) * sh + kh + oh, (W - 1) * sw + kw + ow)
    for a in range(kh):
        for b in range(kw):
            spread = torch.einsum("nchw,cd->ndhw", x, weight[:, :, a, b])
            full[:, :, a:a + (H - 1) * sh + 1:sh, b:b + (W - 1) * sw + 1:sw] += spread
    out = full[:, :, ph:full.shape[2] - ph, pw:full.shape[3] - pw]
    if bias is not None:
        out = out + bias[:, None, None]
    return out
'''
DIFFERENT_BUT_RIGHT = {"conv-matrix": matrix(), "conv2d-im2col": im2col(), "conv-transpose2d": TAPS,
                       "bilinear-kernel": bilinear()}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
