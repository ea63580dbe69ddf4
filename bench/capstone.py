"""Train the capstone's reference Faster R-CNN (a11-capstone's build_detector) and torchvision's
FasterRCNN, configured alike, on the course's synthetic shapes in one run; print for each the
training time, the inference time and the mAP on held-out images, and the ratios reference /
torchvision.

    .venv/bin/python bench/capstone.py [--steps N] [--train-images N] [--test-images N]
                                       [--threads N] [--device cpu|cuda] [--seed N] [--quick]

The twin: torchvision.models.detection.FasterRCNN built from the reference model's own settings
(a copy of its backbone, its anchor sizes and aspect ratios, RPN and box-head IoU thresholds,
sample sizes, pre/post-NMS top-n, NMS thresholds, box-coder weights, ROI Align 7 x 7 with sampling
ratio 2, a two-layer box head of the same width, image mean and std, min_size = max_size = the image
size so that its transform does not resize) and loaded with the reference's initial weights, so both
start from the same parameters. Before training the script checks that the two detect exactly
the same boxes on held-out images: the configurations agree.

Training: SyntheticShapes(train_images, seed=1), the same batches of 8 images (random horizontal
flips) in the same order for both, AdamW (weight decay 1e-4) with a one-cycle learning rate (peak
3e-3), `steps` steps. The two models train step by step in turn, each with its own random-number
state (anchor and proposal sampling), so that both see the same machine load; "training s" is the
sum of each model's step times. Evaluation: SyntheticShapes(test_images, seed=2) in batches of 8,
mAP from pycocotools' COCOeval (bbox, all areas, at most 100 detections per image): AP at IoU 0.5
and AP averaged over IoU 0.5:0.95.

Goals (full run): mAP ratio >= 0.95 (both mAPs), training-time ratio <= 1.25, and the reference
reaching mAP@0.5 >= 0.9 within 600 s of training. --quick is a smoke test (about 15 s): 20 steps on
32 images, goals not judged.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import pathlib
import sys
import time

import torch
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from coursetools.reference import load_reference  # noqa: E402
from odcourse.data import SyntheticShapes  # noqa: E402

NUM_CLASSES = 4  # the background and the three shapes
BATCH_SIZE = 8
LEARNING_RATE = 3e-3
GOALS = {"map_ratio": 0.95, "time_ratio": 1.25, "map_50": 0.9, "train_seconds": 600.0}


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a11-capstone's reference detector and torchvision's "
                                                 "FasterRCNN alike; compare their training time, speed and mAP.")
    parser.add_argument("--steps", type=int, default=500, help="training steps of 8 images (default 500)")
    parser.add_argument("--train-images", type=int, default=1000, help="training images (default 1000)")
    parser.add_argument("--test-images", type=int, default=500, help="held-out images (default 500)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="PyTorch CPU threads (default: every core, %(default)s here)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0, help="initial weights, batches and sampling (default 0)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 20 steps, 32 + 16 images")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU in this runtime")
    if args.quick:
        args.steps, args.train_images, args.test_images = 20, 32, 16
    if args.steps < 1 or args.train_images < 1 or args.test_images < 1:
        parser.error("--steps, --train-images and --test-images must be at least 1")
    torch.set_num_threads(args.threads)
    return args


def torchvision_twin(model: torch.nn.Module, image_size: int) -> FasterRCNN:
    """torchvision's FasterRCNN with the reference `model`'s settings and weights."""
    rpn, heads = model.rpn, model.roi_heads
    representation = heads.box_head.fc7.out_features
    twin = FasterRCNN(
        copy.deepcopy(model.backbone), num_classes=None, min_size=image_size, max_size=image_size,
        image_mean=model.image_mean.flatten().tolist(), image_std=model.image_std.flatten().tolist(),
        rpn_anchor_generator=AnchorGenerator((rpn.sizes,), (rpn.aspect_ratios,)),
        rpn_pre_nms_top_n_train=rpn.pre_nms_top_n["training"], rpn_pre_nms_top_n_test=rpn.pre_nms_top_n["testing"],
        rpn_post_nms_top_n_train=rpn.post_nms_top_n["training"],
        rpn_post_nms_top_n_test=rpn.post_nms_top_n["testing"], rpn_nms_thresh=rpn.nms_thresh,
        rpn_fg_iou_thresh=rpn.fg_iou_thresh, rpn_bg_iou_thresh=rpn.bg_iou_thresh,
        rpn_batch_size_per_image=rpn.batch_size_per_image, rpn_positive_fraction=rpn.positive_fraction,
        box_roi_pool=MultiScaleRoIAlign(["0"], heads.pooled_size, heads.sampling_ratio),
        box_head=TwoMLPHead(heads.box_head.fc6.in_features, representation),
        box_predictor=FastRCNNPredictor(representation, heads.box_predictor.cls_score.out_features),
        box_score_thresh=heads.score_thresh, box_nms_thresh=heads.nms_thresh,
        box_detections_per_img=heads.detections_per_img, box_fg_iou_thresh=heads.fg_iou_thresh,
        box_bg_iou_thresh=heads.bg_iou_thresh, box_batch_size_per_image=heads.batch_size_per_image,
        box_positive_fraction=heads.positive_fraction, bbox_reg_weights=heads.weights)
    twin.load_state_dict(model.state_dict())
    return twin


def load(dataset: SyntheticShapes, device: torch.device) -> list[tuple[torch.Tensor, dict]]:
    """Every (image, {"boxes", "labels"}) of the data set, on `device`."""
    items = []
    for image, target in dataset:
        items.append((image.to(device), {"boxes": target["boxes"].to(device), "labels": target["labels"].to(device)}))
    return items


def flipped(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """The image mirrored left to right, and its boxes with it."""
    width = image.shape[-1]
    x1, y1, x2, y2 = target["boxes"].unbind(1)
    return image.flip(-1), {"boxes": torch.stack([width - x2, y1, width - x1, y2], 1), "labels": target["labels"]}


def batch_plan(count: int, steps: int, seed: int) -> list[list[tuple[int, bool]]]:
    """For each step, BATCH_SIZE (image index, flip?) pairs drawn from their own generator."""
    generator = torch.Generator().manual_seed(seed)
    plan = []
    for _ in range(steps):
        chosen = torch.randint(count, (BATCH_SIZE,), generator=generator).tolist()
        flips = (torch.rand(BATCH_SIZE, generator=generator) < 0.5).tolist()
        plan.append(list(zip(chosen, flips)))
    return plan


class Trainee:
    """One model under training: its optimizer, schedule, random-number state and clock."""

    def __init__(self, name: str, model: torch.nn.Module, steps: int, seed: int, device: torch.device):
        self.name, self.model, self.device = name, model, device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=LEARNING_RATE,
                                                            total_steps=steps, pct_start=0.1)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            self.rng = self.random_state()
        self.seconds = 0.0
        self.last_losses: dict[str, float] = {}

    def random_state(self):
        return torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None

    def step(self, images, targets) -> None:
        """One optimisation step with this model's own random numbers; its duration is added up."""
        cpu, cuda = self.rng
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, self.device)
        synchronise(self.device)
        start = time.perf_counter()
        self.model.train()
        losses = self.model(images, targets)
        total = sum(losses.values())
        self.optimizer.zero_grad()
        total.backward()
        self.optimizer.step()
        self.schedule.step()
        synchronise(self.device)
        self.seconds += time.perf_counter() - start
        self.rng = self.random_state()
        self.last_losses = {key: value.item() for key, value in losses.items()}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def detect_all(models: dict[str, torch.nn.Module], test, device: torch.device):
    """Each model's detections of every test image (batches of 8, the models in turn) and its
    inference time in seconds."""
    detections = {name: [] for name in models}
    seconds = dict.fromkeys(models, 0.0)
    for model in models.values():
        model.eval()
    for first in range(0, len(test), BATCH_SIZE):
        images = [image for image, _ in test[first:first + BATCH_SIZE]]
        for name, model in models.items():
            synchronise(device)
            start = time.perf_counter()
            found = model(images)
            synchronise(device)
            seconds[name] += time.perf_counter() - start
            detections[name] += [{key: value.cpu() for key, value in d.items()} for d in found]
    return detections, seconds


def coco_map(detections: list[dict], test) -> tuple[float, float]:
    """(AP at IoU 0.5, AP over IoU 0.5:0.95) from pycocotools' COCOeval: bbox, all areas, 100 detections."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        sys.exit("bench/capstone.py measures mAP with pycocotools, which is not installed: "
                 "pip install pycocotools")

    def xywh(box):
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]

    images, annotations, results = [], [], []
    for index, ((image, target), found) in enumerate(zip(test, detections)):
        images.append({"id": index, "height": image.shape[-2], "width": image.shape[-1]})
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": index, "category_id": label,
                                "bbox": xywh(box), "area": (box[2] - box[0]) * (box[3] - box[1]), "iscrowd": 0})
        for box, label, score in zip(found["boxes"].tolist(), found["labels"].tolist(), found["scores"].tolist()):
            results.append({"image_id": index, "category_id": label, "bbox": xywh(box), "score": score})
    if not results:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": k} for k in range(1, NUM_CLASSES)]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return max(float(evaluation.stats[1]), 0.0), max(float(evaluation.stats[0]), 0.0)  # -1 means no objects


def same_detections(a: list[dict], b: list[dict]) -> bool:
    return all(x["boxes"].shape == y["boxes"].shape and torch.allclose(x["boxes"], y["boxes"], atol=1e-4)
               and torch.equal(x["labels"], y["labels"]) for x, y in zip(a, b))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv=None) -> None:
    args = parse(argv)
    device = torch.device(args.device)
    ref = load_reference("a11-capstone")
    started = time.perf_counter()
    train = load(SyntheticShapes(args.train_images, seed=1), device)
    test = load(SyntheticShapes(args.test_images, seed=2), device)
    data_seconds = time.perf_counter() - started
    image_size = train[0][0].shape[-1]

    torch.manual_seed(args.seed)
    reference = ref.build_detector(NUM_CLASSES).to(device)
    twin = torchvision_twin(reference, image_size).to(device)
    models = {"reference (a11 build_detector)": reference, "torchvision FasterRCNN": twin}
    before, _ = detect_all(models, test[:BATCH_SIZE], device)
    assert same_detections(*before.values()), "the twin is not configured like the reference"

    trainees = [Trainee(name, model, args.steps, args.seed, device) for name, model in models.items()]
    plan = batch_plan(len(train), args.steps, args.seed)
    report_every = max(1, args.steps // 5)
    for step, chosen in enumerate(plan, start=1):
        batch = [flipped(*train[i]) if flip else train[i] for i, flip in chosen]
        images, targets = [image for image, _ in batch], [target for _, target in batch]
        for trainee in trainees:
            trainee.step(images, targets)
        if step % report_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}: " + "; ".join(
                f"{t.name.split()[0]} loss {sum(t.last_losses.values()):.3f} ({t.seconds:.0f} s)" for t in trainees),
                flush=True)

    detections, seconds = detect_all(models, test, device)
    rows = []
    for trainee in trainees:
        map_50, map_all = coco_map(detections[trainee.name], test)
        rows.append((trainee.name, trainee.seconds, seconds[trainee.name] / len(test) * 1e3, map_50, map_all))

    print(f"\ndevice {args.device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}; {args.steps} steps of {BATCH_SIZE} images from {args.train_images} training "
          f"images, {args.test_images} held-out images ({data_seconds:.0f} s to make the data)")
    print(f"{'model':32} {'training s':>11} {'inference ms/image':>19} {'mAP@0.5':>8} {'mAP@[.5:.95]':>13}")
    for name, train_s, infer_ms, map_50, map_all in rows:
        print(f"{name:32} {train_s:11.1f} {infer_ms:19.2f} {map_50:8.3f} {map_all:13.3f}")
    (_, ref_s, ref_ms, ref_50, ref_all), (_, tv_s, tv_ms, tv_50, tv_all) = rows
    ratios = [ref_s / tv_s, ref_ms / tv_ms, ref_50 / tv_50 if tv_50 else float("nan"),
              ref_all / tv_all if tv_all else float("nan")]
    print(f"{'ratio reference / torchvision':32} {ratios[0]:11.2f} {ratios[1]:19.2f} {ratios[2]:8.3f} {ratios[3]:13.3f}")
    if args.quick:
        print("goals not judged in a --quick run")
        return
    print(f"goal: training-time ratio <= {GOALS['time_ratio']}: {verdict(ratios[0] <= GOALS['time_ratio'])}")
    print(f"goal: mAP ratios >= {GOALS['map_ratio']}: mAP@0.5 {verdict(ratios[2] >= GOALS['map_ratio'])}, "
          f"mAP@[.5:.95] {verdict(ratios[3] >= GOALS['map_ratio'])}")
    print(f"goal: reference mAP@0.5 >= {GOALS['map_50']} within {GOALS['train_seconds']:.0f} s of training: "
          f"{verdict(ref_50 >= GOALS['map_50'] and ref_s <= GOALS['train_seconds'])} "
          f"({ref_50:.3f} in {ref_s:.0f} s)")


if __name__ == "__main__":
    main()
