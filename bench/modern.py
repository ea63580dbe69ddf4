"""Time a12-modern-detectors' references against torchvision and scipy, and train chapter 12's FCOS
beside the capstone's Faster R-CNN, in one run; print the ratios (reference / library) and both
detectors' training time and mAP.

    .venv/bin/python bench/modern.py [--device cpu|cuda] [--threads N] [--steps N] [--train-images N]
                                     [--test-images N] [--quick]

Workloads. Focal loss: the dense classification of one 800 x 800 image by RetinaNet, 120,087
anchors x 80 classes (9.6 million logits, 1% positives), reduction "sum", forward and a training
step (forward and backward), against torchvision.ops.sigmoid_focal_loss. GIoU: 1000 x 1000 boxes,
forward and training step, against torchvision.ops.generalized_box_iou. Hungarian matching: DETR's
sizes, 100 predictions and 30 objects, a cost like DETR's (-probability + 5 L1 - 2 GIoU of random
boxes, many predictions near the objects), against scipy.optimize.linear_sum_assignment (the goal:
at most 20 times scipy's compiled solver); the two reach the same total cost. Each of these figures
is the median of torch.utils.benchmark's blocked_autorange, after checking the results agree.

Detectors: chapter 12's FCOS (odcourse.modern.small_fcos: torchvision's FCOS on the course's small
backbone with a three-level pyramid) and chapter 11's Faster R-CNN (odcourse.modern.capstone_detector),
both from the same backbone weights, trained with odcourse.modern.train_detector on the same
synthetic images (SyntheticShapes(train_images, seed=1)), the same batches of 4, steps and seed, Adam
with a one-cycle learning rate peaking at 5e-3 (the chapter's settings), one after the other; then
mAP@0.5 and mAP@[.5:.95] on SyntheticShapes(test_images, seed=2) with COCO's rules
(odcourse.detectors.coco_style_ap) and the detection time per image. --quick is a smoke test (about
20 s): smaller tensors, 10 steps on 16 images.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch
import torchvision
from scipy.optimize import linear_sum_assignment
from torch.utils import benchmark

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from coursetools.reference import load_reference  # noqa: E402
from odcourse.data import SyntheticShapes  # noqa: E402
from odcourse.detectors import coco_style_ap  # noqa: E402
from odcourse.modern import capstone_detector, detect_all, small_fcos, train_detector  # noqa: E402

HUNGARIAN_GOAL = 20.0
BATCH_SIZE, LEARNING_RATE = 4, 5e-3


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1, as graders run)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of 4 images (default 1000)")
    parser.add_argument("--train-images", type=int, default=1000, help="training images (default 1000)")
    parser.add_argument("--test-images", type=int, default=300, help="held-out images (default 300)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: small tensors, 10 steps on 16 images")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU in this runtime")
    if args.quick:
        args.steps, args.train_images, args.test_images = 10, 16, 8
    torch.set_num_threads(args.threads)
    return args


def median_seconds(step, quick: bool) -> float:
    return benchmark.Timer("step()", globals={"step": step}).blocked_autorange(
        min_run_time=0.2 if quick else 1.0).median


def random_boxes(g, n, scale=800.0):
    corner = torch.rand(n, 2, generator=g) * scale
    return torch.cat([corner, corner + 4 + torch.rand(n, 2, generator=g) * scale / 4], 1)


def detr_cost(g, queries=100, count=30):
    """A cost like DETR's: -probability + 5 L1 - 2 GIoU of random (cx, cy, w, h) boxes near the objects."""
    objects = torch.cat([torch.rand(count, 2, generator=g) * 0.8 + 0.1, torch.rand(count, 2, generator=g) * 0.3 + 0.02], 1)
    predictions = (objects[torch.randint(0, count, (queries,), generator=g)]
                   + torch.randn(queries, 4, generator=g) * 0.05).clamp(0.01, 0.99)

    def corners(b):
        return torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)

    giou = torchvision.ops.generalized_box_iou(corners(predictions), corners(objects))
    return -torch.rand(queries, count, generator=g) + 5 * torch.cdist(predictions, objects, p=1) - 2 * giou


def operations(ref, args, device) -> list[tuple[str, float, float]]:
    g = torch.Generator().manual_seed(0)
    rows = []
    anchors, classes = (12_000, 20) if args.quick else (120_087, 80)
    logits = (torch.randn(anchors, classes, generator=g) * 3).to(device)
    targets = (torch.rand(anchors, classes, generator=g) < 0.01).float().to(device)
    ours = ref.sigmoid_focal_loss(logits, targets, reduction="sum")
    assert torch.allclose(ours, torchvision.ops.sigmoid_focal_loss(logits, targets, reduction="sum"), rtol=1e-4)
    leaf = logits.clone().requires_grad_(True)

    def step(function):
        def run():
            leaf.grad = None
            function(leaf, targets, reduction="sum").backward()
        return run

    for name, ours_fn, theirs_fn in (
            ("focal loss, forward", lambda: ref.sigmoid_focal_loss(logits, targets, reduction="sum"),
             lambda: torchvision.ops.sigmoid_focal_loss(logits, targets, reduction="sum")),
            ("focal loss, training step", step(ref.sigmoid_focal_loss), step(torchvision.ops.sigmoid_focal_loss))):
        rows.append((name, median_seconds(ours_fn, args.quick), median_seconds(theirs_fn, args.quick)))
    count = 200 if args.quick else 1000
    first, second = random_boxes(g, count).to(device), random_boxes(g, count).to(device)
    assert torch.allclose(ref.generalized_box_iou(first, second), torchvision.ops.generalized_box_iou(first, second),
                          atol=1e-5)
    leaf_boxes = first.clone().requires_grad_(True)

    def giou_step(function):
        def run():
            leaf_boxes.grad = None
            function(leaf_boxes, second).sum().backward()
        return run

    rows.append((f"GIoU {count} x {count}, forward", median_seconds(lambda: ref.generalized_box_iou(first, second), args.quick),
                 median_seconds(lambda: torchvision.ops.generalized_box_iou(first, second), args.quick)))
    rows.append((f"GIoU {count} x {count}, training step", median_seconds(giou_step(ref.generalized_box_iou), args.quick),
                 median_seconds(giou_step(torchvision.ops.generalized_box_iou), args.quick)))
    costs = [detr_cost(g).to(device) for _ in range(20)]
    for cost in costs:
        r, c = ref.hungarian_match(cost)
        sr, sc = linear_sum_assignment(cost.cpu().numpy())
        assert abs(float(cost[r, c].sum()) - float(cost.cpu().numpy()[sr, sc].sum())) < 1e-4
    which = iter(range(10**9))
    rows.append(("Hungarian matching 100 x 30 (scipy)",
                 median_seconds(lambda: ref.hungarian_match(costs[next(which) % 20]), args.quick),
                 median_seconds(lambda: linear_sum_assignment(costs[next(which) % 20].cpu().numpy()), args.quick)))
    return rows


def detectors(args, device) -> dict[str, dict]:
    train = [item for item in SyntheticShapes(args.train_images, seed=1)]
    test = [item for item in SyntheticShapes(args.test_images, seed=2)]
    results = {}
    for name, model in (("FCOS (chapter 12)", small_fcos(seed=0)), ("Faster R-CNN (chapter 11)", capstone_detector(seed=0))):
        _, seconds = train_detector(model, train, args.steps, BATCH_SIZE, LEARNING_RATE, seed=0, device=device)
        start = time.perf_counter()
        found = detect_all(model, [image for image, _ in test], device=device)
        detect_ms = 1000 * (time.perf_counter() - start) / len(test)
        table = coco_style_ap(found, [target for _, target in test])
        results[name] = {"train_s": seconds, "detect_ms": detect_ms, "map_50": table["map_50"], "map": table["map"],
                         "parameters": sum(p.numel() for p in model.parameters())}
    return results


def main(argv=None) -> None:
    args = parse(argv)
    device = torch.device(args.device)
    ref = load_reference("a12-modern-detectors")
    started = time.perf_counter()
    print(f"device {args.device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}{' (--quick)' if args.quick else ''}")
    print(f"{'operation':40} {'reference':>12} {'library':>12} {'ratio':>7}")
    ratios = {}
    for name, mine, peer in operations(ref, args, device):
        ratios[name] = mine / peer
        print(f"{name:40} {mine * 1e3:9.3f} ms {peer * 1e3:9.3f} ms {mine / peer:7.2f}")
    hungarian = ratios["Hungarian matching 100 x 30 (scipy)"]
    print(f"goal: hungarian_match at most {HUNGARIAN_GOAL:g} times scipy's solver: "
          f"{'met' if hungarian <= HUNGARIAN_GOAL else 'NOT met'} ({hungarian:.1f})")
    print(f"\ndetectors: {args.steps} steps of {BATCH_SIZE} images from {args.train_images} training images, "
          f"learning rate {LEARNING_RATE:g}, seed 0; {args.test_images} held-out images")
    print(f"{'detector':28} {'parameters':>10} {'training s':>11} {'ms / image':>11} {'mAP@0.5':>8} {'mAP':>7}")
    results = detectors(args, device)
    for name, r in results.items():
        print(f"{name:28} {r['parameters']:10,} {r['train_s']:11.1f} {r['detect_ms']:11.2f} {r['map_50']:8.3f} "
              f"{r['map']:7.3f}")
    fcos, frcnn = results.values()
    print(f"FCOS / Faster R-CNN: training time {fcos['train_s'] / frcnn['train_s']:.2f}, mAP@0.5 "
          f"{fcos['map_50'] / max(frcnn['map_50'], 1e-9):.3f}, mAP {fcos['map'] / max(frcnn['map'], 1e-9):.3f}")
    print(f"bench finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
