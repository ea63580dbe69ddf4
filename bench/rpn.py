"""Time the reference anchors and proposal filtering (a05-rpn) against torchvision's, in one run,
and print the ratios (reference / torchvision).

    .venv/bin/python bench/rpn.py [--device cpu|cuda] [--threads N]

The workload is the slides' setting: an 800 x 800 image, a stride-16 feature map (50 x 50), 9
anchors per location (sizes 128, 256, 512; ratios 0.5, 1, 2), so 22,500 anchors. torchvision's
peers are AnchorGenerator.forward on that map and RegionProposalNetwork.filter_proposals with its
test-time settings (1000 proposals before and after NMS at 0.7) on the same anchors, logits and
decoded boxes (the reference filter_proposals decodes the deltas itself; torchvision's decoding is
timed with its filtering, BoxCoder.decode then filter_proposals, so both do the same work). Each
figure is the median of torch.utils.benchmark's blocked_autorange.
"""
from __future__ import annotations

import pathlib
import sys

import torch
import torchvision
from torch.utils import benchmark
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.options import device_and_threads  # noqa: E402
from coursetools.reference import load_reference  # noqa: E402

IMAGE, FEATURE, SIZES, RATIOS = (800, 800), (50, 50), (128, 256, 512), (0.5, 1.0, 2.0)


def median_seconds(step, *args) -> float:
    timer = benchmark.Timer("step(*args)", globals={"step": step, "args": args})
    return timer.blocked_autorange(min_run_time=1.0).median


def main(argv=None) -> None:
    args = device_and_threads(__doc__.splitlines()[0], argv)
    device = torch.device(args.device)
    ref = load_reference("a05-rpn")
    generator = AnchorGenerator((SIZES,), (RATIOS,))
    images = ImageList(torch.zeros(1, 3, *IMAGE, device=device), [IMAGE])
    feature_map = [torch.zeros(1, 256, *FEATURE, device=device)]
    anchors = generator(images, feature_map)[0]
    assert torch.equal(ref.generate_anchors(IMAGE, FEATURE, SIZES, RATIOS, device=device), anchors)

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(len(anchors), generator=g) * 2).to(device)
    deltas = (torch.randn(len(anchors), 4, generator=g) * 0.2).to(device)
    network = RegionProposalNetwork(generator, None, 0.7, 0.3, 256, 0.5, {"training": 2000, "testing": 1000},
                                    {"training": 2000, "testing": 1000}, 0.7).eval()
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))

    def torchvision_filter():
        proposals = coder.decode(deltas, [anchors]).view(1, -1, 4)
        return network.filter_proposals(proposals, logits[None], [IMAGE], [len(anchors)])

    def reference_filter():
        return ref.filter_proposals(anchors, logits, deltas, IMAGE, 1000, 1000, 0.7)

    want, got = torchvision_filter(), reference_filter()
    assert torch.allclose(got[0], want[0][0], atol=1e-3) and torch.allclose(got[1], want[1][0])

    cases = [
        ("generate_anchors (22,500 anchors)",
         lambda: ref.generate_anchors(IMAGE, FEATURE, SIZES, RATIOS, device=device),
         lambda: generator(images, feature_map)),
        ("filter_proposals (1000 of 22,500)", reference_filter, torchvision_filter),
    ]
    print(f"device {args.device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}; 800 x 800 image, stride-16 map, 9 anchors per location")
    print(f"{'operation':36} {'reference':>12} {'torchvision':>12} {'ratio':>7}")
    with torch.no_grad():
        for name, ours, theirs in cases:
            mine, peer = median_seconds(ours), median_seconds(theirs)
            print(f"{name:36} {mine * 1e3:9.2f} ms {peer * 1e3:9.2f} ms {mine / peer:7.2f}")


if __name__ == "__main__":
    main()
