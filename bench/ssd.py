"""Time the reference SSD matching and loss (a09-ssd) against torchvision's, on SSD300's shapes in one
run, and print the ratios (reference / torchvision).

    .venv/bin/python bench/ssd.py [--device cpu|cuda] [--threads N]

Workload: a batch of 8 images of 300 x 300 with 1 to 8 objects each, SSD300's 8,732 default boxes,
91 classes (COCO with the background). Matching: the reference's match_default_boxes against
torchvision's box_iou + SSDMatcher (threshold 0.5), per image. Loss: the reference's labels and
encode_ssd per image then ssd_loss, against torchvision's SSD.compute_loss (which encodes with
BoxCoder((10, 10, 5, 5)), mines hard negatives at 3:1 and normalises by the positives) on the same
matches, logits and offsets. Each figure is the median of torch.utils.benchmark's
blocked_autorange; the results are checked equal first.
"""
from __future__ import annotations

import pathlib
import sys
import types

import torch
import torchvision
from torch.utils import benchmark
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.models.detection.ssd import SSD

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.options import device_and_threads  # noqa: E402
from coursetools.reference import load_reference  # noqa: E402

SSD300 = ([38, 19, 10, 5, 3, 1], [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], [[2], [2, 3], [2, 3], [2, 3], [2], [2]])


def median_seconds(step) -> float:
    return benchmark.Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=1.0).median


def main(argv=None) -> None:
    args = device_and_threads(__doc__.splitlines()[0], argv)
    device = torch.device(args.device)
    ref = load_reference("a09-ssd")
    defaults = ref.default_boxes(*SSD300, steps=[8, 16, 32, 64, 100, 300], image_size=300).to(device) * 300
    g = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(8):
        count = int(torch.randint(1, 9, (1,), generator=g))
        corner = torch.rand(count, 2, generator=g) * 220
        boxes = torch.cat([corner, corner + 10 + torch.rand(count, 2, generator=g) * 70], 1)
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(1, 91, (count,), generator=g).to(device)})
    cls_logits = torch.randn(8, len(defaults), 91, generator=g).to(device)
    loc_pred = torch.randn(8, len(defaults), 4, generator=g).to(device)
    matcher = SSDMatcher(0.5)
    state = types.SimpleNamespace(box_coder=BoxCoder((10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)

    def torchvision_matching():
        return [matcher(torchvision.ops.box_iou(t["boxes"], defaults)) for t in targets]

    def reference_matching():
        return [ref.match_default_boxes(t["boxes"], defaults, 0.5) for t in targets]

    matches = torchvision_matching()
    assert all(torch.equal(a, b) for a, b in zip(reference_matching(), matches))

    def torchvision_loss():
        out = SSD.compute_loss(state, targets, {"cls_logits": cls_logits, "bbox_regression": loc_pred},
                               [defaults] * len(targets), matches)
        return out["bbox_regression"] + out["classification"]

    def reference_loss():
        labels, offsets = [], []
        for target, match in zip(targets, matches):
            safe = match.clamp(min=0)
            labels.append(torch.where(match >= 0, target["labels"][safe], 0))
            offsets.append(ref.encode_ssd(target["boxes"][safe], defaults))
        return ref.ssd_loss(cls_logits, loc_pred, torch.stack(labels), torch.stack(offsets), 3, 1.0)

    assert torch.allclose(reference_loss(), torchvision_loss(), rtol=1e-4)
    print(f"device {args.device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}; 8 images, 8,732 default boxes, 91 classes")
    print(f"{'operation':40} {'reference':>12} {'torchvision':>12} {'ratio':>7}")
    with torch.no_grad():
        for name, ours, theirs in (("matching (box_iou + SSDMatcher)", reference_matching, torchvision_matching),
                                   ("loss (encode, mining, SSD.compute_loss)", reference_loss, torchvision_loss)):
            mine, peer = median_seconds(ours), median_seconds(theirs)
            print(f"{name:40} {mine * 1e3:9.2f} ms {peer * 1e3:9.2f} ms {mine / peer:7.2f}")


if __name__ == "__main__":
    main()
