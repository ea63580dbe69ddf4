"""Hidden suite for a07-transposed-conv: the convolution matrix, convolution by im2col, the
transposed convolution (forward and gradients) and FCN's bilinear kernel."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.support import (GRADING, expect_close, expect_fast, expect_tensor_like, expect_unchanged,
                                       generator)

FUNCTIONS = {"conv_matrix": "conv-matrix", "conv2d_im2col": "conv2d-im2col", "conv_transpose2d": "conv-transpose2d",
             "bilinear_kernel": "bilinear-kernel"}
CONVOLUTIONS = ["torch.nn.functional.conv1d", "torch.nn.functional.conv2d", "torch.nn.functional.conv3d",
                "torch.nn.functional.conv_transpose1d", "torch.nn.functional.conv_transpose2d",
                "torch.nn.functional.conv_transpose3d", "torch.conv1d", "torch.conv2d", "torch.conv3d",
                "torch.conv_transpose1d", "torch.conv_transpose2d", "torch.conv_transpose3d", "torch.convolution",
                "torch._convolution", "torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.Conv3d", "torch.nn.ConvTranspose1d",
                "torch.nn.ConvTranspose2d", "torch.nn.ConvTranspose3d", "torch.nn.LazyConv2d",
                "torch.nn.LazyConvTranspose2d", "torch.nn.grad", "torch.ops.aten", "torch._C._nn", "torchvision.ops",
                # the operators every convolution of PyTorch dispatches, whatever Python name reached them
                "aten::convolution", "aten::_convolution", "aten::convolution_overrideable", "aten::mkldnn_convolution",
                "aten::_slow_conv2d_forward", "aten::slow_conv_transpose2d", "aten::slow_conv3d_forward",
                "aten::slow_conv_dilated2d", "aten::_conv_depthwise2d", "aten::_nnpack_spatial_convolution",
                "aten::cudnn_convolution", "aten::cudnn_convolution_transpose", "aten::miopen_convolution",
                "aten::convolution_backward"]
UNFOLD = ["torch.nn.functional.unfold", "torch.nn.Unfold", "aten::im2col"]
FOLD = ["torch.nn.functional.fold", "torch.nn.Fold", "aten::col2im"]
BANNED = {
    "conv_matrix": CONVOLUTIONS + UNFOLD + FOLD + ["torch.autograd.functional", "torch.func"],
    "conv2d_im2col": CONVOLUTIONS + UNFOLD + FOLD,
    "conv_transpose2d": CONVOLUTIONS,
    "bilinear_kernel": CONVOLUTIONS + ["torch.nn.functional.interpolate", "torch.nn.functional.upsample",
                                       "torch.nn.functional.upsample_bilinear", "aten::upsample_bilinear2d",
                                       "aten::upsample_bicubic2d", "aten::upsample_nearest2d", "aten::_upsample_bilinear2d_aa"],
}


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


# conv_matrix ----------------------------------------------------------------------------------

MATRIX_HINT = ("H_o = floor((H + 2p - k) / s) + 1 rows of outputs; output (i, j) reads input (i s - p + a, j s - p + b) "
               "with weight K[a, b] (not flipped), in column (i s - p + a) W + (j s - p + b); taps on the padding have "
               "no column; a pair is (rows, columns)")
SLIDE_INPUT = torch.tensor([[4.0, 5, 8, 7], [1, 8, 8, 8], [3, 6, 6, 4], [6, 5, 7, 8]])
SLIDE_KERNEL = torch.tensor([[1.0, 4, 1], [1, 4, 3], [3, 3, 1]])


@pytest.mark.function("conv_matrix")
@pytest.mark.points(1)
def test_conv_matrix_of_the_slides_example(student, reference, device):
    kernel = SLIDE_KERNEL.to(device)
    got = student.call("conv_matrix", kernel, 4, failure="conv_matrix failed on the slides' example: {error}")
    expect_close(got, reference.conv_matrix(kernel, 4), "the slides' 4 x 16 convolution matrix",
                 "row i W_o + j holds K[a, b] in column (i s - p + a) W + (j s - p + b)", atol=0)
    output = got.detach().cpu() @ SLIDE_INPUT.reshape(16)
    expect(torch.equal(output, torch.tensor([122.0, 148, 126, 134])),
           f"C @ I gives {output.tolist()} instead of the slides' [122, 148, 126, 134]")
    expect_unchanged(student, "conv_matrix")


@st.composite
def matrix_cases(draw):
    """(seed, kernel size, input size, stride, padding, dtype) with the kernel fitting the padded input."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.sampled_from([1, 2, 3, (1, 2), (3, 1)]))
    padding = draw(st.sampled_from([0, 1, 2, (0, 1), (2, 0)]))
    ph, pw = pair(padding)
    height = draw(st.integers(max(1, kh - 2 * ph), 9))
    width = draw(st.integers(max(1, kw - 2 * pw), 9))
    size = draw(st.sampled_from([(height, width), (height, width) if height != width else height]))
    return (draw(st.integers(0, 2**31 - 1)), (kh, kw), size, stride, padding,
            draw(st.sampled_from([torch.float32, torch.float64])))


@pytest.mark.function("conv_matrix")
@pytest.mark.points(2)
@GRADING
@given(matrix_cases())
def test_conv_matrix_of_random_kernels(student, reference, device, case):
    seed, shape, size, stride, padding, dtype = case
    kernel = torch.randn(*shape, generator=generator(seed), dtype=torch.float64).to(dtype).to(device)
    got = student.call("conv_matrix", kernel, size, stride, padding,
                       failure=f"conv_matrix failed for a {shape[0]} x {shape[1]} kernel with stride {stride} and "
                               f"padding {padding} ({{error}}): {MATRIX_HINT}")
    expect_close(got, reference.conv_matrix(kernel, size, stride, padding),
                 f"conv_matrix of a {shape[0]} x {shape[1]} kernel on a {size} input, stride {stride}, padding {padding}",
                 MATRIX_HINT, atol=0)


@pytest.mark.function("conv_matrix")
@pytest.mark.points(1)
def test_conv_matrix_kernel_too_big(student, reference, device):
    kernel = torch.ones(4, 2, device=device)
    got = student.call("conv_matrix", kernel, (3, 5), 1, 1,
                       failure=f"conv_matrix failed for a 4 x 2 kernel on a 3 x 5 input with padding 1 ({{error}}): "
                               f"{MATRIX_HINT}")
    expect_close(got, reference.conv_matrix(kernel, (3, 5), 1, 1), "a 4 x 2 kernel on a 3 x 5 input with padding 1",
                 "padding adds p rows above and below; " + MATRIX_HINT, atol=0)
    message = ""
    try:
        student.call("conv_matrix", kernel, (3, 5), 1, 0)
    except Exception as error:  # the Finding that carries the student's error
        message = str(error)
    expect("ValueError" in message, "a 4 x 2 kernel on a 3 x 5 input without padding must raise a ValueError "
                                    f"(the kernel does not fit){': it raised ' + message[:120] if message else ''}")


@pytest.mark.function("conv_matrix")
@pytest.mark.points(1)
def test_conv_matrix_is_differentiable_in_the_kernel(student, reference, device):
    kernel = torch.randn(3, 2, generator=generator(5), dtype=torch.float64).to(device)
    upstream = torch.randn(20, 30, generator=generator(6), dtype=torch.float64).to(device)
    probe = {"kind": "backward", "wrt": [0], "grad_output": upstream}
    got = student.call("conv_matrix", kernel, (5, 6), (1, 2), 1, probe=probe,
                       failure="the gradient of conv_matrix with respect to the kernel could not be computed "
                               "({error}): build the matrix from kernel's values with out-of-place operations; "
                               + MATRIX_HINT)
    want = reference.call("conv_matrix", kernel, (5, 6), (1, 2), 1, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient of conv_matrix with respect to the kernel",
                 "each entry K[a, b] of the matrix passes its gradient back to kernel[a, b]", atol=1e-12)


# conv2d_im2col --------------------------------------------------------------------------------

@st.composite
def conv_cases(draw):
    """(seed, N, C_in, C_out, kernel, input size, stride, padding, bias, dtype)."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride, padding = draw(st.sampled_from([1, 2, (2, 1), (1, 3)])), draw(st.sampled_from([0, 1, (1, 0), (0, 2)]))
    ph, pw = pair(padding)
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)),
            (kh, kw), (draw(st.integers(max(1, kh - 2 * ph), 10)), draw(st.integers(max(1, kw - 2 * pw), 10))),
            stride, padding, draw(st.booleans()), draw(st.sampled_from([torch.float32, torch.float64])))


IM2COL_HINT = ("pad both sides, take every (channel, kernel row, kernel column) window in the order of "
               "weight.reshape(C_out, -1), one matrix product, then the bias of each filter; "
               "H_o = floor((H + 2p - k) / s) + 1")
TRANSPOSED_HINT = ("input (i, j) adds x[c, i, j] weight[c, d, a, b] to output (i s + a - p, j s + b - p) of channel d; "
                   "weight is [in_channels, out_channels, kH, kW]; H_out = (H - 1) s - 2p + k + output_padding")


def expect_same_gradients(student, reference, name, args, g, hint):
    """The gradients of `name` with respect to x, weight and bias (args[:3]) equal the reference's
    for one random upstream gradient."""
    x = args[0]
    upstream = torch.randn(reference.call(name, *args).shape, generator=g, dtype=torch.float64).to(x.device)
    probe = {"kind": "backward", "wrt": [0, 1, 2], "grad_output": upstream}
    got = student.call(name, *args, probe=probe, failure=f"the gradients through {name} could not be computed "
                                                         f"({{error}}): build the result from x, weight and bias with "
                                                         f"differentiable operations; {hint}")
    want = reference.call(name, *args, probe=probe)
    for index, what in enumerate(("x", "weight", "bias")):
        expect_close(got[1][index], want[1][index], f"the gradient of {name} with respect to {what}", hint, atol=1e-10)


def conv_inputs(case, device, transposed=False):
    seed, n, c_in, c_out, (kh, kw), (h, w), stride, padding, with_bias, dtype = case
    g = generator(seed)
    x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64).to(dtype).to(device)
    shape = (c_in, c_out, kh, kw) if transposed else (c_out, c_in, kh, kw)
    weight = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64).to(dtype).to(device) if with_bias else None
    return x, weight, bias, stride, padding


@pytest.mark.function("conv2d_im2col")
@pytest.mark.points(2)
@GRADING
@given(conv_cases())
def test_conv2d_im2col_of_random_layers(student, reference, device, case):
    args = conv_inputs(case, device)
    x, weight = args[:2]
    got = student.call("conv2d_im2col", *args, failure=f"conv2d_im2col failed with stride {args[3]} and padding "
                                                       f"{args[4]} ({{error}}): {IM2COL_HINT}")
    expect_close(got, reference.conv2d_im2col(*args),
                 f"conv2d_im2col of a {tuple(x.shape)} input with {tuple(weight.shape)} weights, stride {args[3]}, "
                 f"padding {args[4]}, {'with' if args[2] is not None else 'no'} bias",
                 IM2COL_HINT, atol=1e-4, rtol=1e-4)


@pytest.mark.function("conv2d_im2col")
@pytest.mark.points(1)
def test_conv2d_im2col_gradients(student, reference, device):
    case = (7, 2, 3, 4, (3, 2), (6, 7), (2, 1), (1, 0), True, torch.float64)
    x, weight, bias, stride, padding = conv_inputs(case, device)
    expect_same_gradients(student, reference, "conv2d_im2col", (x, weight, bias, stride, padding), generator(8),
                          "autograd gives conv2d's gradients when the result is built from the inputs with "
                          "differentiable operations")


@pytest.mark.function("conv2d_im2col")
@pytest.mark.points(1)
def test_conv2d_im2col_layout_and_edge_cases(student, reference, device):
    g = generator(9)
    x = torch.randn(2, 3, 8, 5, generator=g).to(device)
    weight = torch.randn(4, 3, 3, 3, generator=g).to(device)
    layout = x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    expect_close(student.conv2d_im2col(layout, weight, None, 1, 1), reference.conv2d_im2col(x, weight, None, 1, 1),
                 "conv2d_im2col of a non-contiguous input", "do not assume a contiguous layout (reshape, not view)",
                 atol=1e-4)
    expect_unchanged(student, "conv2d_im2col")
    whole = torch.randn(5, 3, 8, 5, generator=g).to(device)
    expect_close(student.conv2d_im2col(x, whole, None, 1, 0), reference.conv2d_im2col(x, whole, None, 1, 0),
                 "a kernel as large as the input (one output cell)", "H_o = floor((H + 2p - k) / s) + 1", atol=1e-4)
    point = torch.randn(6, 3, 1, 1, generator=g).to(device)
    expect_close(student.conv2d_im2col(x, point, None, 2, 0), reference.conv2d_im2col(x, point, None, 2, 0),
                 "a 1 x 1 kernel with stride 2", "a 1 x 1 convolution mixes channels cell by cell", atol=1e-4)
    empty = x[:0]
    expect_tensor_like(student.conv2d_im2col(empty, weight, None, 1, 1), reference.conv2d_im2col(empty, weight, None, 1, 1),
                       "conv2d_im2col of a batch of no images")


@pytest.mark.function("conv2d_im2col")
@pytest.mark.points(1)
def test_conv2d_im2col_speed(student, reference):
    expect_fast(student, reference, "conv2d_im2col",
                lambda g: (torch.randn(1, 4, 160, 160, generator=g), torch.randn(4, 4, 3, 3, generator=g), None, 1, 1),
                factor=10, seed=10,
                hint="build all the columns with tensor operations (padding, strided windows) and use one matrix "
                     "product, not a loop over output cells or kernel taps")


# conv_transpose2d -----------------------------------------------------------------------------

@st.composite
def transposed_cases(draw):
    """conv_cases plus output_padding (smaller than the stride)."""
    seed = draw(st.integers(0, 2**31 - 1))
    stride = draw(st.sampled_from([1, 2, 3, (2, 1), (1, 3)]))
    sh, sw = pair(stride)
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    output_padding = draw(st.sampled_from([0, (sh - 1, sw - 1), (0, sw - 1)]))
    # padding at most what the full output can lose
    padding = draw(st.sampled_from([0, 1, (1, 0), (0, 2)]))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    ph, pw = pair(padding)
    ph, pw = min(ph, ((h - 1) * sh + kh - 1) // 2), min(pw, ((w - 1) * sw + kw - 1) // 2)
    return ((seed, draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), (kh, kw), (h, w),
             stride, (ph, pw), draw(st.booleans()), draw(st.sampled_from([torch.float32, torch.float64]))),
            output_padding)


@pytest.mark.function("conv_transpose2d")
@pytest.mark.points(2)
@GRADING
@given(transposed_cases())
def test_conv_transpose2d_of_random_layers(student, reference, device, case):
    case, output_padding = case
    args = conv_inputs(case, device, transposed=True) + (output_padding,)
    x, weight = args[:2]
    got = student.call("conv_transpose2d", *args,
                       failure=f"conv_transpose2d failed with stride {args[3]}, padding {args[4]} and output_padding "
                               f"{output_padding} ({{error}}): {TRANSPOSED_HINT}")
    expect_close(got, reference.conv_transpose2d(*args),
                 f"conv_transpose2d of a {tuple(x.shape)} input with {tuple(weight.shape)} weights, stride {args[3]}, "
                 f"padding {args[4]}, output_padding {output_padding}, {'with' if args[2] is not None else 'no'} bias",
                 TRANSPOSED_HINT, atol=1e-4, rtol=1e-4)


@pytest.mark.function("conv_transpose2d")
@pytest.mark.points(2)
@GRADING
@given(transposed_cases())
def test_conv_transpose2d_gradients(student, reference, device, case):
    case, output_padding = case
    case = case[:-2] + (True, torch.float64)
    x, weight, bias, stride, padding = conv_inputs(case, device, transposed=True)
    expect_same_gradients(student, reference, "conv_transpose2d", (x, weight, bias, stride, padding, output_padding),
                          generator(case[0] + 1), "the gradient with respect to x is a convolution of the upstream "
                          "gradient with the same kernel; autograd gives it when the result is built with "
                          "differentiable operations; " + TRANSPOSED_HINT)


@pytest.mark.function("conv_transpose2d")
@pytest.mark.points(1)
def test_conv_transpose2d_layout_and_edge_cases(student, reference, device):
    g = generator(11)
    x = torch.randn(2, 3, 5, 4, generator=g).to(device)
    weight = torch.randn(3, 2, 4, 4, generator=g).to(device)
    layout = x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    expect_close(student.conv_transpose2d(layout, weight, None, 2, 1, 1),
                 reference.conv_transpose2d(x, weight, None, 2, 1, 1), "conv_transpose2d of a non-contiguous input",
                 "do not assume a contiguous layout (reshape, not view)", atol=1e-4)
    expect_unchanged(student, "conv_transpose2d")
    slide = torch.tensor([[[[122.0, 148], [126, 134]]]], device=device)
    expect_close(student.conv_transpose2d(slide, SLIDE_KERNEL[None, None].to(device)),
                 reference.conv_transpose2d(slide, SLIDE_KERNEL[None, None].to(device)),
                 "the slides' 2 x 2 output taken back to 4 x 4 (C^T @ O)",
                 "each value times the kernel, added at its own position", atol=1e-3)
    empty = x[:0]
    expect_tensor_like(student.conv_transpose2d(empty, weight, None, 2, 1, 0),
                       reference.conv_transpose2d(empty, weight, None, 2, 1, 0), "conv_transpose2d of a batch of no images")


@pytest.mark.function("conv_transpose2d")
@pytest.mark.points(1)
def test_conv_transpose2d_speed(student, reference):
    expect_fast(student, reference, "conv_transpose2d",
                lambda g: (torch.randn(1, 64, 64, 64, generator=g), torch.randn(64, 32, 4, 4, generator=g),
                           torch.randn(32, generator=g), 2, 1), factor=20, seed=12,
                hint="compute every input cell's contributions with one matrix product and add them into place "
                     "with tensor operations (fold, index_add_), not in a loop over cells or kernel taps")


# bilinear_kernel ------------------------------------------------------------------------------

@pytest.mark.function("bilinear_kernel")
@pytest.mark.points(2)
def test_bilinear_kernel_weights(student, reference):
    for size in (1, 2, 3, 4, 5, 8, 16, 32):
        got = student.call("bilinear_kernel", 2, 2, size, failure=f"bilinear_kernel failed for size {size} ({{error}})")
        expect_close(got, reference.bilinear_kernel(2, 2, size), f"bilinear_kernel(2, 2, {size})",
                     "f = ceil(k / 2); centre f - 1 for odd k, f - 1/2 for even k; (1 - |a - c| / f)(1 - |b - c| / f) "
                     "on weight[c, c], 0 elsewhere; float32", atol=1e-7)


@pytest.mark.function("bilinear_kernel")
@pytest.mark.points(1)
def test_bilinear_kernel_channels(student, reference):
    for channels in ((3, 5), (4, 1), (1, 1), (6, 6)):
        expect_close(student.bilinear_kernel(*channels, 4), reference.bilinear_kernel(*channels, 4),
                     f"bilinear_kernel{channels + (4,)}",
                     "weight is [in_channels, out_channels, k, k]; the kernel only on weight[c, c] for "
                     "c < min(in_channels, out_channels)", atol=1e-7)


@pytest.mark.function("bilinear_kernel")
@pytest.mark.points(1)
def test_bilinear_kernel_upsamples_like_interpolation(student, reference):
    image = torch.rand(1, 3, 9, 11, generator=generator(13))
    for factor in (2, 4):
        weight = student.call("bilinear_kernel", 3, 3, 2 * factor, failure="bilinear_kernel failed: {error}")
        expect_tensor_like(weight, reference.bilinear_kernel(3, 3, 2 * factor), f"bilinear_kernel(3, 3, {2 * factor})")
        up = torch.nn.functional.conv_transpose2d(image, weight.float(), stride=factor, padding=factor // 2)
        smooth = torch.nn.functional.interpolate(image, scale_factor=factor, mode="bilinear", align_corners=False)
        inner = (Ellipsis, slice(factor, -factor), slice(factor, -factor))
        expect(bool(torch.allclose(up[inner], smooth[inner], atol=1e-5)),
               f"a transposed convolution with your kernel of size {2 * factor}, stride {factor} and padding "
               f"{factor // 2} must up-sample like bilinear interpolation away from the border")
