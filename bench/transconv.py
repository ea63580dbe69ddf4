"""Time the reference convolutions (a07-transposed-conv) against PyTorch's own, in one run, and
print the ratios (reference / PyTorch).

    .venv/bin/python bench/transconv.py [--device cpu|cuda] [--threads N]

Workloads: the hidden suite's transposed convolution (a 1 x 64 x 64 x 64 input, 64 -> 32 channels,
4 x 4 kernel, stride 2, padding 1: FCN-style up-sampling by 2) and FCN's 32x bilinear up-sampling of
21 class-score maps (kernel 64, stride 32, padding 16, a 1 x 21 x 16 x 16 map), forward and
training step (the call and the backward pass to the input and the weights); and an im2col
convolution of a VGG-like layer (1 x 64 x 112 x 112, 64 filters of 3 x 3, padding 1). Peers:
torch.nn.functional.conv_transpose2d and conv2d. Each figure is the median of
torch.utils.benchmark's blocked_autorange.
"""
from __future__ import annotations

import pathlib
import sys

import torch
import torch.nn.functional as F
from torch.utils import benchmark

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.options import device_and_threads  # noqa: E402
from coursetools.reference import load_reference  # noqa: E402


def median_seconds(step) -> float:
    return benchmark.Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=1.0).median


def training_step(function, x, weight, *rest):
    """The call and its backward pass to x and weight."""
    def step():
        a, b = x.detach().requires_grad_(True), weight.detach().requires_grad_(True)
        torch.autograd.grad(function(a, b, *rest).sum(), (a, b))
    return step


def main(argv=None) -> None:
    args = device_and_threads(__doc__.splitlines()[0], argv)
    device = torch.device(args.device)
    ref = load_reference("a07-transposed-conv")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 64, 64, generator=g).to(device)
    weight = torch.randn(64, 32, 4, 4, generator=g).to(device)
    bias = torch.randn(32, generator=g).to(device)
    scores = torch.randn(1, 21, 16, 16, generator=g).to(device)
    bilinear = ref.bilinear_kernel(21, 21, 64).to(device)
    image = torch.randn(1, 64, 112, 112, generator=g).to(device)
    filters = torch.randn(64, 64, 3, 3, generator=g).to(device)
    for ours, theirs, inputs in ((ref.conv_transpose2d, F.conv_transpose2d, (x, weight, bias, 2, 1)),
                                 (ref.conv_transpose2d, F.conv_transpose2d, (scores, bilinear, None, 32, 16)),
                                 (ref.conv2d_im2col, F.conv2d, (image, filters, None, 1, 1))):
        assert torch.allclose(ours(*inputs), theirs(*inputs), atol=1e-3, rtol=1e-4)

    cases = [
        ("conv_transpose2d 64->32, 64x64, stride 2", ref.conv_transpose2d, F.conv_transpose2d,
         (x, weight, bias, 2, 1)),
        ("conv_transpose2d FCN 32x bilinear, 21 maps", ref.conv_transpose2d, F.conv_transpose2d,
         (scores, bilinear, None, 32, 16)),
        ("conv2d_im2col 64->64, 112x112, 3x3", ref.conv2d_im2col, F.conv2d, (image, filters, None, 1, 1)),
    ]
    print(f"device {args.device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(f"{'operation':44} {'step':>8} {'reference':>12} {'PyTorch':>12} {'ratio':>7}")
    for name, ours, theirs, inputs in cases:
        with torch.no_grad():
            mine, peer = median_seconds(lambda: ours(*inputs)), median_seconds(lambda: theirs(*inputs))
        print(f"{name:44} {'forward':>8} {mine * 1e3:9.2f} ms {peer * 1e3:9.2f} ms {mine / peer:7.2f}")
        mine, peer = median_seconds(training_step(ours, *inputs)), median_seconds(training_step(theirs, *inputs))
        print(f"{'':44} {'training':>8} {mine * 1e3:9.2f} ms {peer * 1e3:9.2f} ms {mine / peer:7.2f}")


if __name__ == "__main__":
    main()
