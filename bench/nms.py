"""Time the reference non-maximum suppression (a08-yolo) against torchvision's compiled nms and
batched_nms, in one run, and print the ratios (reference / torchvision).

    .venv/bin/python bench/nms.py [--device cpu|cuda] [--threads N]

Workloads: random boxes in an 800 x 800 image (4 to 104 pixels a side), scores uniform in [0, 1],
IoU threshold 0.5: 1,000 and 5,000 boxes (the hidden suite times 5,000), and for batched_nms the
same boxes in 20 categories (torchvision then runs one nms per category). Each figure is the
median of torch.utils.benchmark's blocked_autorange; the results are checked equal first.
"""
from __future__ import annotations

import pathlib
import sys

import torch
import torchvision
from torch.utils import benchmark

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.options import device_and_threads  # noqa: E402
from coursetools.reference import load_reference  # noqa: E402


def median_seconds(step) -> float:
    return benchmark.Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=1.0).median


def main(argv=None) -> None:
    args = device_and_threads(__doc__.splitlines()[0], argv)
    device = torch.device(args.device)
    ref = load_reference("a08-yolo")
    print(f"device {args.device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}; boxes in an 800 x 800 image, IoU threshold 0.5")
    print(f"{'operation':38} {'kept':>6} {'reference':>12} {'torchvision':>12} {'ratio':>7}")
    for count in (1000, 5000):
        g = torch.Generator().manual_seed(count)
        corner = torch.rand(count, 2, generator=g) * 800
        boxes = torch.cat([corner, corner + 4 + torch.rand(count, 2, generator=g) * 100], 1).to(device)
        scores = torch.rand(count, generator=g).to(device)
        categories = torch.randint(0, 20, (count,), generator=g).to(device)
        cases = [(f"nms, {count:,} boxes", lambda: ref.nms(boxes, scores, 0.5),
                  lambda: torchvision.ops.nms(boxes, scores, 0.5)),
                 (f"batched_nms, {count:,} boxes, 20 classes", lambda: ref.batched_nms(boxes, scores, categories, 0.5),
                  lambda: torchvision.ops.batched_nms(boxes, scores, categories, 0.5))]
        for name, ours, theirs in cases:
            kept = ours()
            assert torch.equal(kept, theirs()), f"{name}: the reference keeps other boxes than torchvision"
            mine, peer = median_seconds(ours), median_seconds(theirs)
            print(f"{name:38} {len(kept):6} {mine * 1e3:9.2f} ms {peer * 1e3:9.2f} ms {mine / peer:7.2f}")


if __name__ == "__main__":
    main()
