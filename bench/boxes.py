"""Time the reference solutions of a02-proposals and a03-rcnn against their torchvision twins on
realistic sizes, in one run, and print the ratio (reference time / torchvision time).

    .venv/bin/python bench/boxes.py [--device cpu|cuda] [--threads N]

Each figure is the median of torch.utils.benchmark's blocked_autorange. The references are read
from solutions/<id>/<id>.ipynb, as the grader runs them. The ratio says how much slower the course's
plain-PyTorch code is than torchvision's (compiled where torchvision has a compiled op); the hidden
suites limit students to a multiple of the reference, so this bounds what the course asks.
"""
from __future__ import annotations

import pathlib
import sys

import torch
import torchvision
from torch.utils import benchmark
from torchvision.models.detection._utils import BoxCoder

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.options import device_and_threads  # noqa: E402
from coursetools.reference import load_reference  # noqa: E402


def random_boxes(n: int, scale: float, device: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * scale
    size = torch.rand(n, 2, generator=g) * scale / 4 + 1
    return torch.cat([corner, corner + size], 1).to(device)


def median_seconds(statement: str, **names) -> float:
    return benchmark.Timer(statement, globals=names).blocked_autorange(min_run_time=0.5).median


def main(argv=None) -> None:
    args = device_and_threads(__doc__.splitlines()[0], argv)
    device = args.device
    a02, a03 = load_reference("a02-proposals"), load_reference("a03-rcnn")
    boxes1, boxes2 = random_boxes(2000, 800, device, 0), random_boxes(2000, 800, device, 1)
    many = random_boxes(100_000, 800, device, 2)
    truths, proposals = random_boxes(20_000, 800, device, 3), random_boxes(20_000, 800, device, 4)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    deltas = coder.encode_single(truths, proposals)
    image = torch.rand(3, 480, 640, device=device)
    box = torch.tensor([100.5, 50.25, 420.0, 400.75], device=device)
    cases = [
        ("box_area, 100000 boxes", "ref.box_area(b)", "tv.ops.box_area(b)", {"b": many}),
        ("box_iou, 2000 x 2000 boxes", "ref.box_iou(a, b)", "tv.ops.box_iou(a, b)", {"a": boxes1, "b": boxes2}),
        ("encode_boxes, 20000 boxes", "ref.encode_boxes(t, p, weights=(10.0, 10.0, 5.0, 5.0))",
         "coder.encode_single(t, p)", {"t": truths, "p": proposals}),
        ("decode_boxes, 20000 boxes", "ref.decode_boxes(d, p, weights=(10.0, 10.0, 5.0, 5.0))",
         "coder.decode_single(d, p)", {"d": deltas, "p": proposals}),
        ("warp_region, 480x640 image to 224x224", "ref.warp_region(x, box, 224)",
         "tv.ops.roi_align(x[None], [box[None]], 224, 1.0, 1, True)", {"x": image, "box": box}),
    ]
    print(f"device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}")
    print(f"{'operation':40} {'reference':>12} {'torchvision':>12} {'ratio':>7}")
    for name, ours, theirs, data in cases:
        ref = a02 if name.startswith("box_") else a03
        mine = median_seconds(ours, ref=ref, **data)
        peer = median_seconds(theirs, tv=torchvision, coder=coder, **data)
        print(f"{name:40} {mine * 1e3:9.3f} ms {peer * 1e3:9.3f} ms {mine / peer:7.2f}")


if __name__ == "__main__":
    main()
