"""Hidden suite for a11-capstone: the detector `build_detector(num_classes)` returns, judged by what
it does with torchvision's detection interface (losses in training mode, detections in evaluation
mode), on images with and without objects, and by whether it learns a tiny batch by heart.

The detector is built and trained inside the worker (autograder/worker/probes.py, `detector`);
the expensive run (the tiny batch learnt by heart) is made once per device, in a fresh fork timed
by the grader's clock, and judged by several tests."""
import math

import pytest
import torch
from torchvision.ops import box_iou

from autograder.checks import expect
from autograder.suites.support import generator

FUNCTIONS = {"build_detector": "build-detector"}
DETECTION_INTERNALS = [
    "torchvision.models.detection",
    "torchvision.models.detection.generalized_rcnn.GeneralizedRCNN.forward",
    "torchvision.models.detection.rpn.RegionProposalNetwork.forward",
    "torchvision.models.detection.rpn.RPNHead.forward",
    "torchvision.models.detection.anchor_utils.AnchorGenerator.forward",
    "torchvision.models.detection.roi_heads.RoIHeads.forward",
    "torchvision.models.detection.roi_heads.fastrcnn_loss",
    "torchvision.models.detection._utils.Matcher.__call__",
    "torchvision.models.detection._utils.BoxCoder.encode",
    "torchvision.models.detection._utils.BoxCoder.decode",
    "torchvision.models.detection._utils.BalancedPositiveNegativeSampler.__call__",
    "torchvision.models.detection.transform.GeneralizedRCNNTransform.forward",
]
BANNED = {"build_detector": DETECTION_INTERNALS}

NUM_CLASSES = 4  # the background and three shapes
LOSS_KEYS = ["loss_box_reg", "loss_classifier", "loss_objectness", "loss_rpn_box_reg"]
OVERFIT = {"steps": 120, "lr": 1e-3}
CALL_SECONDS = 240  # one build and training run in the worker


def shapes_image(g, height: int, width: int, count: int):
    """(image float[3, H, W] in [0, 1], boxes float[count, 4], labels int64[count]): rectangles (1),
    discs (2) and crosses (3) of a colour per class on a noisy background, apart from each other."""
    image = 0.15 + 0.1 * torch.rand(3, height, width, generator=g)
    colours = {1: (0.9, 0.2, 0.2), 2: (0.2, 0.8, 0.3), 3: (0.25, 0.35, 0.95)}
    rows, columns = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    boxes, labels = [], []
    for _ in range(200):
        if len(boxes) == count:
            break
        size = int(torch.randint(22, 44, (1,), generator=g))
        x1 = int(torch.randint(0, width - size, (1,), generator=g))
        y1 = int(torch.randint(0, height - size, (1,), generator=g))
        box = [x1, y1, x1 + size, y1 + size]
        if any(box[0] < b[2] + 4 and b[0] < box[2] + 4 and box[1] < b[3] + 4 and b[1] < box[3] + 4 for b in boxes):
            continue
        label = int(torch.randint(1, 4, (1,), generator=g))
        inside = (columns >= box[0]) & (columns < box[2]) & (rows >= box[1]) & (rows < box[3])
        cx, cy, half = (box[0] + box[2]) / 2 - 0.5, (box[1] + box[3]) / 2 - 0.5, size / 2
        if label == 2:
            inside &= (columns - cx) ** 2 + (rows - cy) ** 2 <= half ** 2
        elif label == 3:
            inside &= ((columns - cx).abs() <= half / 3) | ((rows - cy).abs() <= half / 3)
        image[:, inside] = torch.tensor(colours[label])[:, None]
        boxes.append(box)
        labels.append(label)
    return image, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64)


def batch(seed: int, sizes, counts, device):
    """(images, targets) on `device`: one image of each size with its number of objects."""
    g = generator(seed)
    images, targets = [], []
    for (height, width), count in zip(sizes, counts):
        image, boxes, labels = shapes_image(g, height, width, count)
        images.append(image.to(device))
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


def run(proxy, device, num_classes=NUM_CLASSES, train=None, eval_images=None, seed=0, what="the detector"):
    probe = {"kind": "detector", "seed": seed, "train": train, "eval": eval_images}
    return proxy.call("build_detector", num_classes, probe=probe, seconds=CALL_SECONDS,
                      failure=f"{what} failed ({{error}})")


def expect_inputs_unchanged(report, images, targets, what: str) -> None:
    """The images and targets the model was given, as the worker holds them afterwards, are what
    the grader sent."""
    sent = [t for t in [*images, *(v for target in targets for v in target.values())]]
    back = report.get("inputs", [])
    same = len(back) >= len(sent) and all(a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
                                          for a, b in zip(sent, back))
    expect(same, f"{what} changed the images or the targets in place")


def learnt_by_heart(student, reference, shared, device, which: str):
    """(report, images, targets, seconds): the tiny batch of two images (4 and 3 objects) after
    OVERFIT's steps, the detections on it and the seconds the whole call took (the grader's clock,
    a fresh fork, the other worker stopped while the reference runs); once per side and device."""
    key = ("learnt by heart", which, device)
    if key not in shared:
        images, targets = batch(101, [(112, 128), (128, 112)], [4, 3], device)
        probe = {"kind": "detector", "seed": 0, "train": {"images": images, "targets": targets, **OVERFIT},
                 "eval": images}
        failure = "training on a tiny batch of two images failed ({error})"
        if which == "reference":
            with student.frozen():
                report, seconds = reference.timed("build_detector", NUM_CLASSES, probe=probe, seconds=CALL_SECONDS,
                                                  failure=failure)
        else:
            report, seconds = student.timed("build_detector", NUM_CLASSES, probe=probe, seconds=CALL_SECONDS,
                                            record=True, failure=failure)
        shared[key] = (report, images, targets, seconds)
    return shared[key]


def expect_valid_detections(outputs, images, num_classes: int, what: str) -> None:
    """A list with one dict per image of boxes float[D, 4] inside the image, labels int64[D] in
    1..num_classes - 1 and scores float[D] in [0, 1], highest first, D <= 100."""
    expect(isinstance(outputs, list), f"in evaluation mode the model must return a list (one dict per image), "
                                      f"not {type(outputs).__name__}")
    expect(len(outputs) == len(images), f"{what}: {len(outputs)} results for {len(images)} images")
    for i, (output, image) in enumerate(zip(outputs, images)):
        expect(isinstance(output, dict) and {"boxes", "labels", "scores"} <= set(output),
               f"{what}: the result of image {i} must be a dict with 'boxes', 'labels' and 'scores'")
        boxes, labels, scores = output["boxes"], output["labels"], output["scores"]
        expect(all(isinstance(t, torch.Tensor) for t in (boxes, labels, scores)),
               f"{what}: boxes, labels and scores must be tensors")
        count = len(scores)
        expect(boxes.shape == (count, 4) and labels.shape == (count,) and scores.shape == (count,),
               f"{what}: image {i} has boxes {tuple(boxes.shape)}, labels {tuple(labels.shape)} and scores "
               f"{tuple(scores.shape)}: expected [D, 4], [D] and [D]")
        expect(boxes.dtype.is_floating_point and scores.dtype.is_floating_point and labels.dtype == torch.int64,
               f"{what}: boxes and scores must be floating point and labels int64 (got {boxes.dtype}, "
               f"{scores.dtype}, {labels.dtype})")
        expect(boxes.device.type == image.device.type, f"{what}: the detections must be on the images' device")
        expect(count <= 100, f"{what}: {count} detections in one image; at most 100 (the best ones) are kept")
        if count == 0:
            continue
        boxes, labels, scores = boxes.cpu().double(), labels.cpu(), scores.cpu().double()
        height, width = image.shape[-2:]
        expect(bool(torch.isfinite(boxes).all() and torch.isfinite(scores).all()), f"{what}: non-finite boxes or scores")
        expect(bool((boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()),
               f"{what}: boxes must have x2 >= x1 and y2 >= y1")
        inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= width) & (boxes[:, 3] <= height)
        expect(bool(inside.all()), f"{what}: boxes must be clipped to the image ({width} x {height} pixels, boxes in "
                                   "the input image's pixels)")
        expect(bool(((scores >= 0) & (scores <= 1)).all()), f"{what}: scores must be probabilities in [0, 1]")
        expect(bool((scores[:-1] >= scores[1:]).all()), f"{what}: detections must come highest score first")
        expect(bool(((labels >= 1) & (labels < num_classes)).all()),
               f"{what}: labels must be object classes 1 to {num_classes - 1} (0 is the background), "
               f"found {sorted(set(labels.tolist()))}")


@pytest.mark.function("build_detector")
@pytest.mark.points(3)
def test_training_mode_returns_a_dict_of_losses(student, device):
    images, targets = batch(1, [(96, 128), (128, 96)], [2, 3], device)
    report = run(student, device, train={"images": images, "targets": targets, "steps": 1, "lr": 1e-4},
                 what="model(images, targets) in training mode")
    keys = report.get("keys", [])
    expect(keys == LOSS_KEYS, f"in training mode the losses are a dict with torchvision's keys {LOSS_KEYS}, "
                              f"not {keys}")
    expect(all(report["scalar"]), "every loss must be a 0-dimensional tensor (a mean or a sum, not one per box)")
    expect(all(report["finite"]), "a loss is not finite on two ordinary images (a division by zero, or a log of 0?)")
    expect(all(report["requires_grad"]), "every loss must depend on the parameters (keep the graph: no .item(), "
                                         "no torch.no_grad, no .detach() on the way)")
    share = report["parameters_with_gradient"] / max(report["parameters"], 1)
    expect(share >= 0.9, f"only {report['parameters_with_gradient']} of the model's {report['parameters']} parameter "
                         "tensors get a gradient from the losses: the backbone, the RPN head and the box head must all "
                         "be trained by them")
    expect_inputs_unchanged(report, images, targets, "model(images, targets)")


@pytest.mark.function("build_detector")
@pytest.mark.points(3)
def test_evaluation_mode_returns_valid_detections(student, reference, shared, device):
    report, images, _, _ = learnt_by_heart(student, reference, shared, device, "student")
    expect_valid_detections(report["outputs"], images, NUM_CLASSES, "model(images) in evaluation mode")
    # an untrained detector on images of other sizes, one of them bigger than any seen so far
    fresh, _ = batch(2, [(80, 144), (160, 96), (64, 64)], [1, 2, 0], device)
    outputs = run(student, device, eval_images=fresh, seed=3, what="an untrained model(images) in evaluation mode")
    expect_valid_detections(outputs["outputs"], fresh, NUM_CLASSES, "an untrained detector on three images of "
                                                                     "different sizes")


@pytest.mark.function("build_detector")
@pytest.mark.points(3)
def test_images_without_objects(student, device):
    images, targets = batch(4, [(96, 96), (96, 96)], [0, 0], device)
    report = run(student, device, train={"images": images, "targets": targets, "steps": 2, "lr": 1e-4},
                 eval_images=images[:1], what="training on images without objects")
    expect(report.get("keys") == LOSS_KEYS and all(report["finite"]) and bool(torch.isfinite(report["losses"]).all()),
           "a batch of images without objects (targets with boxes of shape [0, 4]) must give finite losses: "
           "everything is background there, so the box regression losses have no positive to average over (0, "
           "not 0 / 0)")
    expect_valid_detections(report["outputs"], images[:1], NUM_CLASSES, "detections on a blank image")


@pytest.mark.function("build_detector")
@pytest.mark.points(7)
def test_learns_a_tiny_batch_by_heart(student, reference, shared, device):
    report, _, targets, _ = learnt_by_heart(student, reference, shared, device, "student")
    losses = report["losses"].sum(dim=1)
    first, last = float(losses[:3].mean()), float(losses[-5:].mean())
    expect(math.isfinite(last), "the losses became non-finite while training on two images")
    expect(last < 0.35 * first, f"after {OVERFIT['steps']} steps of Adam (lr {OVERFIT['lr']:g}) on the same two images "
                                f"the total loss went from {first:.3f} to {last:.3f}; a working detector learns them "
                                "by heart (below 35% of the start): check the matching of anchors and proposals, the "
                                "box encoding and that the losses reach every part")
    found, wanted, confident = 0, 0, 0
    for output, target in zip(report["outputs"], targets):
        boxes, labels, scores = output["boxes"].cpu(), output["labels"].cpu(), output["scores"].cpu()
        sure = scores >= 0.5
        gt_boxes, gt_labels = target["boxes"].cpu(), target["labels"].cpu()
        iou = box_iou(boxes[sure].double(), gt_boxes.double())
        same = labels[sure][:, None] == gt_labels[None, :]
        found += int(((iou >= 0.5) & same).any(dim=0).sum())  # objects found, each counted once
        wanted += len(gt_boxes)
        confident += int(sure.sum())
    expect(found >= 0.8 * wanted, f"after learning two images by heart the detector finds {found} of their {wanted} "
                                  "objects (score >= 0.5, the right class, IoU >= 0.5); at least 80% are expected: "
                                  "check the decoding of the boxes and the labels of the detections")
    expect(found >= 0.7 * confident, f"its {confident} confident detections (score >= 0.5) find only {found} "
                                     "distinct objects of their class: duplicates that NMS should remove, or boxes "
                                     "decoded from the wrong proposals?")


@pytest.mark.function("build_detector")
@pytest.mark.points(2)
def test_number_of_classes(student, device):
    for num_classes, counts in ((2, [2, 1]), (7, [3, 2])):
        images, targets = batch(5 + num_classes, [(96, 112), (96, 112)], counts, device)
        for target in targets:
            target["labels"] = (target["labels"] * (num_classes - 1) // 3).clamp(1, num_classes - 1)
        report = run(student, device, num_classes=num_classes,
                     train={"images": images, "targets": targets, "steps": 2, "lr": 1e-3}, eval_images=images,
                     what=f"build_detector({num_classes})")
        expect(report.get("keys") == LOSS_KEYS and all(report["finite"]),
               f"build_detector({num_classes}) must train on labels 1 to {num_classes - 1}")
        expect_valid_detections(report["outputs"], images, num_classes, f"build_detector({num_classes})")


@pytest.mark.function("build_detector")
@pytest.mark.points(2)
def test_training_speed(student, reference, shared, device):
    report, images, targets, mine = learnt_by_heart(student, reference, shared, device, "student")
    theirs = learnt_by_heart(student, reference, shared, device, "reference")[3]
    limit = 5 * theirs
    expect(mine <= limit,
           f"building the detector and {OVERFIT['steps']} training steps on two images take {mine:.1f} s where the "
           f"limit is {limit:.1f} s (5 times the reference): compute IoUs, matching, sampling and losses with tensor "
           "operations on all anchors and proposals at once, not in Python loops over boxes")
    expect_inputs_unchanged(report, images, targets, "training")
