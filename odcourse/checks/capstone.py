"""Visible checks for assignment a11-capstone: ``from odcourse.checks import capstone as check``.

The detector is judged by what it does, never by how it is built: the losses it returns in training
mode, the detections it returns in evaluation mode (shapes, dtypes, device, boxes inside the image,
scores sorted, labels in range, one class's boxes not overlapping), images without objects, images
of different sizes, the same weights from the same seed, and whether 60 steps of Adam on two
synthetic images make it find their objects. Runs in well under 30 s on a CPU.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import CheckFailed, NotImplementedYet, Report
from .tensors import close, expect_tensor

LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
OVERFIT_STEPS = 60
LEARNING_RATE = 1e-3
CLASS_NAMES = ("background", "rectangle", "ellipse", "triangle")


def _two_images(seed: int = 11) -> tuple[list[torch.Tensor], list[dict]]:
    """Two 128 x 128 synthetic images (1 and 4 objects) and their targets (boxes and labels only)."""
    from ..data import SyntheticShapes

    data = SyntheticShapes(2, seed=seed)
    images, targets = [], []
    for image, target in data:
        images.append(image)
        targets.append({"boxes": target["boxes"], "labels": target["labels"]})
    return images, targets


def _call(report: Report, what: str, fn, *args):
    """report.call, with what was being done in front of the error message."""
    try:
        return report.call(fn, *args)
    except NotImplementedYet:
        raise
    except CheckFailed as error:  # the findings made before the error are often its cause: keep them
        earlier = "".join(f"\n  - {problem}" for problem in report.problems)
        raise CheckFailed(f"{what}: {error}" + (f"\nFound before that:{earlier}" if earlier else "")) from None


def _no_objects() -> dict:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def _copies(images, targets):
    return [i.clone() for i in images], [{k: v.clone() for k, v in t.items()} for t in targets]


def _unchanged(report: Report, images, targets, saved) -> bool:
    kept_images, kept_targets = saved
    same = all(torch.equal(a, b) for a, b in zip(images, kept_images)) and all(
        torch.equal(t[k], s[k]) for t, s in zip(targets, kept_targets) for k in t)
    return report.expect(same, "the detector changed its input images or targets in place: normalise, pad "
                               "and match on new tensors (x = (x - mean) / std, not x.sub_(mean))")


def _expect_losses(report: Report, losses, what: str, parameters: list[nn.Parameter] | None = None) -> bool:
    """The four named 0-dimensional, finite losses with a gradient; with `parameters`, each loss must
    reach at least one of them."""
    if not report.expect(isinstance(losses, dict), f"{what}: in training mode the detector must return a dict "
                                                    f"of losses, not {type(losses).__name__}"):
        return False
    if not report.expect(set(losses) == set(LOSS_KEYS), f"{what}: the keys are {sorted(losses)} but must be "
                                                          f"exactly {list(LOSS_KEYS)} (torchvision's names)"):
        return False
    ok = True
    for key in LOSS_KEYS:
        value = losses[key]
        if not expect_tensor(report, value, f"{what}: {key}", shape=()):
            ok = False
            continue
        ok &= report.expect(bool(torch.isfinite(value)), f"{what}: {key} is {float(value.detach())}: every loss must be "
                            "finite, also for images without objects (a mean over nothing is nan)")
        ok &= report.expect(value.requires_grad, f"{what}: {key} has no gradient: it must be computed from the "
                            "network's outputs without .detach(), .item() or torch.no_grad()")
    if ok and parameters is not None:
        for key in LOSS_KEYS:
            grads = torch.autograd.grad(losses[key], parameters, retain_graph=True, allow_unused=True)
            reached = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
            ok &= report.expect(reached, f"{what}: {key} sends no gradient to any parameter: it is cut from "
                                         "the head that predicts it")
    return bool(ok)


def _expect_detections(report: Report, found, images: list[torch.Tensor], what: str, num_classes: int) -> bool:
    """Detections with the contract's keys, shapes, dtypes and device, and valid values; one finding per
    kind of mistake (the first image showing it is named)."""
    from torchvision.ops import box_iou

    if not report.expect(isinstance(found, (list, tuple)) and len(found) == len(images),
                         f"{what}: in evaluation mode the detector must return a list with one dict per image "
                         f"({len(images)}), not {type(found).__name__}"
                         + (f" of length {len(found)}" if isinstance(found, (list, tuple)) else "")):
        return False
    device = images[0].device
    for index, result in enumerate(found):
        if not report.expect(isinstance(result, dict) and {"boxes", "labels", "scores"} <= set(result),
                             f"{what}: image {index}'s result must be a dict with keys 'boxes', 'labels' and "
                             "'scores'"):
            return False
        count = result["scores"].shape[0] if isinstance(result["scores"], torch.Tensor) else -1
        shapes_ok = all([expect_tensor(report, result["boxes"], f"{what}: image {index}'s boxes", shape=(count, 4),
                                       dtype=torch.float32, device=device),
                         expect_tensor(report, result["labels"], f"{what}: image {index}'s labels", shape=(count,),
                                       dtype=torch.int64, device=device),
                         expect_tensor(report, result["scores"], f"{what}: image {index}'s scores", shape=(count,),
                                       dtype=torch.float32, device=device)])
        if not shapes_ok:
            return False
    problems = {}  # kind of mistake -> the first image showing it
    for index, (result, image) in enumerate(zip(found, images)):
        boxes, labels, scores = (result[k].detach().cpu() for k in ("boxes", "labels", "scores"))
        height, width = image.shape[-2:]
        checks = {
            "more": len(scores) > 100,
            "finite": not bool(torch.isfinite(boxes).all() and torch.isfinite(scores).all()),
            "inside": bool(((boxes[:, 0] < -1e-3) | (boxes[:, 1] < -1e-3) | (boxes[:, 2] > width + 1e-3)
                            | (boxes[:, 3] > height + 1e-3)).any()),
            "order": bool((boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any()),
            "range": bool(((scores < 0.05 - 1e-6) | (scores > 1)).any()),
            "sorted": bool((scores[1:] > scores[:-1]).any()),
            "labels": bool(((labels < 1) | (labels >= num_classes)).any()),
        }
        overlapping = False
        for label in labels.unique().tolist():
            same = boxes[labels == label]
            iou = box_iou(same, same).triu(diagonal=1) if len(same) > 1 else torch.zeros(0)
            overlapping |= bool((iou > 0.5 + 1e-4).any())
        checks["nms"] = overlapping
        for kind, wrong in checks.items():
            if wrong and kind not in problems:
                problems[kind] = index
    sentences = {
        "more": "more than 100 detections: keep the 100 best of each image",
        "finite": "boxes or scores that are not finite (inf or nan): clamp dw and dh before exp()",
        "inside": "boxes outside the image: clip them to 0 <= x <= width and 0 <= y <= height of their own image",
        "order": "boxes with x2 < x1 or y2 < y1: boxes are (x1, y1, x2, y2)",
        "range": "scores outside [0.05, 1]: a score is the softmax probability of the class, kept above 0.05",
        "sorted": "scores not in decreasing order: sort each image's detections, best first",
        "labels": f"labels outside 1..{num_classes - 1}: label 0 is the background and is never a detection",
        "nms": "two detections of one class overlap with IoU above 0.5: run NMS per class (batched_nms) with 0.5",
    }
    for kind, sentence in sentences.items():
        report.expect(kind not in problems, f"{what}, image {problems.get(kind)}: {sentence}")
    return not problems


def _picture(images, targets, found, title: str):
    """A drawing of each image with its objects (green) and detections scored >= 0.3 (red)."""
    def draw():
        import matplotlib.pyplot as plt

        from ..draw import draw_boxes, show_image

        figure, axes = plt.subplots(1, len(images), figsize=(4 * len(images), 4.2))
        for ax, image, target, result in zip(axes, images, targets, found):
            show_image(image, ax, title)
            draw_boxes(target["boxes"], ax, color="#3cb44b", linewidth=2.5,
                       labels=[CLASS_NAMES[k] for k in target["labels"].tolist()])
            confident = result["scores"].detach().cpu() >= 0.3
            captions = [f"{CLASS_NAMES[k] if 0 <= k < len(CLASS_NAMES) else k} {s:.2f}" for k, s in
                        zip(result["labels"][confident].tolist(), result["scores"][confident].tolist())]
            draw_boxes(result["boxes"].detach().cpu()[confident], ax, color="#e6194b", labels=captions)
            ax.axis("off")
        return figure
    return draw


def _missed(images, targets, found) -> list[str]:
    """The objects without a detection of their class at IoU >= 0.5, in words."""
    from torchvision.ops import box_iou

    missed = []
    for index, (target, result) in enumerate(zip(targets, found)):
        for box, label in zip(target["boxes"], target["labels"].tolist()):
            same = result["labels"].cpu() == label
            iou = box_iou(box[None], result["boxes"].detach().cpu()[same]) if same.any() else torch.zeros(1, 0)
            if not bool((iou >= 0.5).any()):
                corners = ", ".join(f"{v:.0f}" for v in box.tolist())
                missed.append(f"the {CLASS_NAMES[label]} ({corners}) of image {index}")
    return missed


def _train(model: nn.Module, images, targets, steps: int) -> list[float]:
    """`steps` steps of Adam on one batch; the total loss of each step (nan once it is not finite)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model.train()
    history = []
    for _ in range(steps):
        losses = model(*_copies(images, targets))  # the same inputs every step, even if the model changes them
        total = sum(losses.values())
        history.append(float(total.detach()))
        if not math.isfinite(history[-1]):
            break
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    return history


def build_detector(fn) -> None:
    """Check ``build_detector``: the training and evaluation interface, empty targets, determinism, other
    image sizes and class counts, and that it learns two images in 60 steps."""
    with Report("build_detector") as report:
        torch.manual_seed(0)
        model = report.call(fn, 4)
        if not report.expect(isinstance(model, nn.Module), "build_detector(4) must return a torch.nn.Module, "
                                                           f"not {type(model).__name__}"):
            return
        parameters = [p for p in model.parameters() if p.requires_grad]
        if not report.expect(bool(parameters), "the detector has no parameters to train"):
            return
        saved = _two_images()
        images, targets = _copies(*saved)

        # Evaluation mode first, while the batch-normalisation statistics are the initial ones.
        torch.manual_seed(0)
        twin = report.call(fn, 4)
        model.eval()
        twin.eval()
        with torch.no_grad():
            found = _call(report, "evaluation mode, 2 images", model, images)
            again = _call(report, "evaluation mode, 2 images", twin, _copies(*saved)[0])
        intact = _unchanged(report, images, targets, saved)
        images, targets = _copies(*saved)  # go on with the original inputs whatever happened to them
        if not _expect_detections(report, found, images, "the untrained detector's detections", 4):
            return
        report.expect(all(torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
                          for a, b in zip(found, again)),
                      "two detectors built after torch.manual_seed(0) detect different boxes: create every weight "
                      "from PyTorch's random generator (and nothing random at detection time)")

        model.train()
        losses = _call(report, "training mode, 2 images", model, images, targets)
        if intact:
            _unchanged(report, images, targets, saved)
        images, targets = _copies(*saved)
        if not _expect_losses(report, losses, "the losses of 2 images", parameters):
            return
        what = "the losses when the second image has no objects"
        _expect_losses(report, _call(report, what, model, images, [targets[0], _no_objects()]), what)
        images, targets = _copies(*saved)
        what = "the losses of 2 images without objects"
        _expect_losses(report, _call(report, what, model, images, [_no_objects(), _no_objects()]), what)
        images, targets = _copies(*saved)

        torch.manual_seed(0)
        model = report.call(fn, 4)
        history = _call(report, "training on 2 images", _train, model, images, targets, OVERFIT_STEPS)
        if not report.expect(len(history) == OVERFIT_STEPS, f"training on 2 images, the loss became "
                             f"{history[-1]} at step {len(history) - 1}: keep every loss finite (clamp dw and dh)"):
            return
        first, last = history[0], sum(history[-5:]) / 5
        report.expect(last < 0.5 * first, f"{OVERFIT_STEPS} steps of Adam (learning rate {LEARNING_RATE:g}) on the "
                      f"same 2 images took the total loss from {first:.2f} only to {last:.2f}: a working detector "
                      "halves it (is each loss computed from the predictions of its own head, for the right "
                      "anchors and proposals?)")
        model.eval()
        with torch.no_grad():
            found = _call(report, "evaluation mode after training", model, _copies(*saved)[0])
        if _expect_detections(report, found, images, "the trained detector's detections", 4):
            missed = _missed(images, targets, found)
            if not report.expect(not missed, f"after {OVERFIT_STEPS} steps on the same 2 images the detector finds "
                                 f"no box of the right class with IoU >= 0.5 for {', '.join(missed)}"):
                report.illustrate(_picture(images, targets, found, "objects (green), detections (red)"))

        mixed = [torch.rand(3, 96, 160, generator=torch.Generator().manual_seed(3)), saved[0][1].clone()]
        with torch.no_grad():
            what = "a 96 x 160 and a 128 x 128 image in one batch"
            found = _call(report, what, model, mixed)
        _expect_detections(report, found, mixed, what, 4)

        torch.manual_seed(0)
        six = report.call(fn, 6)
        many = [{"boxes": t["boxes"], "labels": t["labels"] + 2} for t in targets]  # labels 3..5
        six.train()
        what = "build_detector(6) with labels up to 5"
        _expect_losses(report, _call(report, what, six, _copies(*saved)[0], many), what)
        six.eval()
        with torch.no_grad():
            what = "build_detector(6)'s detections"
            _expect_detections(report, _call(report, what, six, _copies(*saved)[0]), images, what, 6)

        if torch.cuda.is_available():
            gpu_images = [image.cuda() for image in images]
            model.cuda().eval()
            with torch.no_grad():
                _expect_detections(report, _call(report, "on the GPU", model, gpu_images), gpu_images, "on the GPU", 4)
            model.train()
            gpu_targets = [{k: v.cuda() for k, v in t.items()} for t in targets]
            what = "the losses on the GPU"
            _expect_losses(report, _call(report, what, model, gpu_images, gpu_targets), what)


# The stages of the notebook's proposed organisation, checked one at a time (not graded) -------------
#
# Each check builds its stage with the settings of the notebook's build_detector and compares what it
# computes with torchvision's counterpart, or with the rule of the task, on small inputs. A student who
# organised the detector differently can skip them: only build_detector is graded.

SIZES, RATIOS, STRIDE, IMAGE = (16, 32, 64), (0.5, 1.0, 2.0), 8, 128
CELLS = IMAGE // STRIDE  # a 128 x 128 image gives a 16 x 16 feature map


def _gt_and_anchors(generate_anchors, report: Report):
    images, targets = _two_images()
    anchors = _call(report, "generate_anchors for a 128 x 128 image", generate_anchors, (IMAGE, IMAGE),
                    (CELLS, CELLS), SIZES, RATIOS)
    return images, targets, anchors


def parts(generate_anchors, encode_boxes, decode_boxes, match_anchors, sample_anchors) -> None:
    """Stage 1: the anchors of a 128 x 128 image (count, values, order), the box coding both ways, and the
    anchors' labels and sample, against torchvision's AnchorGenerator, BoxCoder and Matcher."""
    from torchvision.models.detection._utils import BoxCoder, Matcher
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import box_iou

    with Report("stage 1: the parts") as report:
        images, targets, anchors = _gt_and_anchors(generate_anchors, report)
        want = AnchorGenerator((SIZES,), (RATIOS,))(ImageList(torch.zeros(1, 3, IMAGE, IMAGE), [(IMAGE, IMAGE)]),
                                                    [torch.zeros(1, 1, CELLS, CELLS)])[0]
        count = CELLS * CELLS * len(SIZES) * len(RATIOS)
        if expect_tensor(report, anchors, "the anchors of a 128 x 128 image", shape=(count, 4)):
            same_set = sorted(map(tuple, anchors.tolist())) == sorted(map(tuple, want.tolist()))
            in_order = torch.allclose(anchors, want, atol=1e-4)
            report.expect(in_order or not same_set, "the anchors are right but not in torchvision's order: location "
                          "by location (row-major), and at each location ratio by ratio, the sizes within each "
                          "ratio; the head's outputs are flattened in that order")
            report.expect(in_order or same_set, f"the anchors differ from torchvision's AnchorGenerator: "
                          f"{count} = 16 x 16 locations x 9 anchors (sizes {SIZES}, ratios h/w {RATIOS}), each "
                          "centred on its location's top-left corner, w = s / sqrt(r), h = s sqrt(r), rounded")
        g = torch.Generator().manual_seed(0)
        proposals = torch.cat([torch.rand(20, 2, generator=g) * 80, torch.rand(20, 2, generator=g) * 40 + 90], 1)
        boxes = proposals + (torch.rand(20, 4, generator=g) - 0.5) * 10
        for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
            deltas = _call(report, f"encode_boxes with weights {weights}", encode_boxes, boxes, proposals, weights)
            if expect_tensor(report, deltas, f"encode_boxes with weights {weights}", shape=(20, 4)):
                report.expect(close(deltas, BoxCoder(weights).encode_single(boxes, proposals), atol=1e-4),
                              f"encode_boxes with weights {weights} differs from BoxCoder.encode_single (the RPN "
                              "uses (1, 1, 1, 1), the box head (10, 10, 5, 5))")
                back = _call(report, "decode_boxes", decode_boxes, deltas, proposals, weights)
                report.expect(isinstance(back, torch.Tensor) and close(back, boxes, atol=1e-3),
                              f"decode_boxes(encode_boxes(boxes)) with weights {weights} does not give the boxes back")
        if isinstance(anchors, torch.Tensor) and anchors.shape == want.shape:
            iou = box_iou(targets[1]["boxes"], anchors)
            matches = _call(report, "match_anchors", match_anchors, iou, 0.7, 0.3, True)
            report.expect(isinstance(matches, torch.Tensor) and torch.equal(matches, Matcher(0.7, 0.3, True)(iou)),
                          "match_anchors differs from torchvision's Matcher(0.7, 0.3, allow_low_quality_matches=True)")
            labels = (matches >= 0).to(want.dtype) if isinstance(matches, torch.Tensor) else torch.zeros(count)
            labels[matches == -2] = -1.0
            positive, negative = _call(report, "sample_anchors", sample_anchors, labels, 256, 0.5,
                                       torch.Generator().manual_seed(1))
            if expect_tensor(report, positive, "sample_anchors' positives", shape=(count,), dtype=torch.bool):
                report.expect(int(positive.sum()) == min(int((labels == 1).sum()), 128) and
                              int((positive | negative).sum()) == min(256, int((labels >= 0).sum())),
                              f"sample_anchors took {int(positive.sum())} positives and {int(negative.sum())} "
                              f"negatives of {int((labels == 1).sum())} and {int((labels == 0).sum())}: up to 128 "
                              "positives, negatives filling the 256")
                report.expect(bool((labels[positive] == 1).all()) and bool((labels[negative] == 0).all()),
                              "sample_anchors sampled ignored anchors (label -1), or mixed up the two masks")
        many = torch.cat([torch.ones(300), torch.zeros(1000), -torch.ones(100)])
        many = many[torch.randperm(len(many), generator=torch.Generator().manual_seed(2))]
        positive, negative = _call(report, "sample_anchors with 300 positives", sample_anchors, many, 256, 0.5,
                                   torch.Generator().manual_seed(3))
        if expect_tensor(report, positive, "sample_anchors' positives", shape=(len(many),), dtype=torch.bool):
            report.expect(int(positive.sum()) == 128 and int(negative.sum()) == 128,
                          f"of 300 positives and 1000 negatives sample_anchors took {int(positive.sum())} and "
                          f"{int(negative.sum())}: 128 of each (positive_fraction 0.5 of 256)")
            report.expect(bool((many[positive] == 1).all()) and bool((many[negative] == 0).all()),
                          "sample_anchors sampled ignored anchors (label -1), or mixed up the two masks")


def region_proposal_network(rpn_class) -> None:
    """Stage 2: the RPN's head outputs, its proposals (how many, inside the image, without gradient) and its
    two losses (finite, differentiable), with the settings of build_detector, on random features."""
    with Report("stage 2: the region proposal network") as report:
        torch.manual_seed(0)
        rpn = _call(report, "RegionProposalNetwork(64, stride=8, ...)", rpn_class, 64, 8, SIZES, RATIOS,
                    {"training": 500, "testing": 300}, {"training": 200, "testing": 100})
        features = torch.randn(2, 64, CELLS, CELLS, generator=torch.Generator().manual_seed(2))
        logits, deltas = _call(report, "the RPN head", rpn.head, [features])
        k = len(SIZES) * len(RATIOS)
        expect_tensor(report, logits[0], "the head's objectness logits", shape=(2, k, CELLS, CELLS))
        expect_tensor(report, deltas[0], "the head's box deltas", shape=(2, 4 * k, CELLS, CELLS))
        rpn.eval()
        proposals, losses = _call(report, "the RPN in evaluation mode", rpn, features, (IMAGE, IMAGE),
                                  [(IMAGE, IMAGE), (100, 90)])
        if report.expect(isinstance(proposals, (list, tuple)) and len(proposals) == 2,
                         "the RPN must return one tensor of proposals per image"):
            for index, (boxes, (height, width)) in enumerate(zip(proposals, [(IMAGE, IMAGE), (100, 90)])):
                if expect_tensor(report, boxes, f"the proposals of image {index}"):
                    report.expect(boxes.dim() == 2 and boxes.shape[1] == 4 and 0 < len(boxes) <= 100,
                                  f"image {index} has {tuple(boxes.shape)} proposals: in evaluation mode at most "
                                  "post_nms_top_n = 100 boxes (x1, y1, x2, y2), and at least one")
                    inside = bool(((boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= width) &
                                   (boxes[:, 3] <= height)).all())
                    report.expect(inside, f"image {index}'s proposals leave its {height} x {width} pixels: clip them "
                                          "to the image's own size, not the padded batch's")
                    report.expect(not boxes.requires_grad, "the proposals must carry no gradient (detach the "
                                                           "deltas and logits before decoding)")
        report.expect(losses == {}, "in evaluation mode the RPN computes no losses")
        rpn.train()
        images, targets = _two_images()
        proposals, losses = _call(report, "the RPN in training mode", rpn, features, (IMAGE, IMAGE),
                                  [(IMAGE, IMAGE)] * 2, [targets[0], _no_objects()])
        if report.expect(isinstance(losses, dict) and set(losses) == {"loss_objectness", "loss_rpn_box_reg"},
                         "in training mode the RPN returns the losses loss_objectness and loss_rpn_box_reg"):
            for name, value in losses.items():
                report.expect(isinstance(value, torch.Tensor) and value.dim() == 0 and
                              math.isfinite(float(value.detach())) and value.requires_grad,
                              f"{name} must be a finite 0-dimensional tensor that autograd follows back to the head "
                              "(an image without objects has negatives to sample)")


def roi_heads(heads_class) -> None:
    """Stage 3: the ROI heads' sample (how many, the ground truth in it, at most a quarter objects), the box
    head's output shapes, the two losses, and the detections' format, on random features and proposals."""
    with Report("stage 3: the ROI heads") as report:
        torch.manual_seed(0)
        heads = _call(report, "RoIHeads(64, stride=8, num_classes=4, ...)", heads_class, 64, 8, 4, 256, 7, 2,
                      0.5, 0.5, 64)
        images, targets = _two_images()
        g = torch.Generator().manual_seed(3)
        corners = torch.rand(2, 150, 2, generator=g) * 90
        proposals = [torch.cat([c, c + 8 + torch.rand(150, 2, generator=g) * 30], 1) for c in corners]
        sampled, labels, regression_targets = _call(report, "sample_proposals", heads.sample_proposals,
                                                    [p.clone() for p in proposals], targets)
        for index, (boxes, image_labels, target) in enumerate(zip(sampled, labels, targets)):
            if not expect_tensor(report, image_labels, f"the sampled labels of image {index}", dtype=torch.int64):
                continue
            report.expect(len(image_labels) <= 64 and len(boxes) == len(image_labels) == len(regression_targets[index]),
                          f"image {index}: {len(image_labels)} sampled proposals, at most 64 per image, with one "
                          "label and one regression target each")
            objects = int((image_labels > 0).sum())
            report.expect(0 < objects <= 16, f"image {index}: {objects} objects among the sampled proposals: the "
                          "ground-truth boxes join the proposals (so there is at least one), and at most a quarter "
                          "of 64 are objects")
            report.expect(bool((image_labels >= 0).all()) and set(image_labels.tolist()) <= {0, *target["labels"].tolist()},
                          f"image {index}: sampled labels must be 0 (background) or the class of a matched object")
        pooled = torch.randn(5, 64, 7, 7, generator=g)
        class_logits, box_regression = _call(report, "the box head and predictor",
                                             lambda x: heads.box_predictor(heads.box_head(x)), pooled)
        expect_tensor(report, class_logits, "the class logits of 5 regions", shape=(5, 4))
        expect_tensor(report, box_regression, "the box deltas of 5 regions", shape=(5, 16))
        features = torch.randn(2, 64, CELLS, CELLS, generator=g)
        heads.train()
        _, losses = _call(report, "the ROI heads in training mode", heads, features, [p.clone() for p in proposals],
                          [(IMAGE, IMAGE)] * 2, targets)
        if report.expect(isinstance(losses, dict) and set(losses) == {"loss_classifier", "loss_box_reg"},
                         "in training mode the ROI heads return loss_classifier and loss_box_reg"):
            for name, value in losses.items():
                report.expect(isinstance(value, torch.Tensor) and value.dim() == 0 and
                              math.isfinite(float(value.detach())) and value.requires_grad,
                              f"{name} must be a finite 0-dimensional tensor with a graph")
        heads.eval()
        with torch.no_grad():
            found, losses = _call(report, "the ROI heads in evaluation mode", heads, features,
                                  [p.clone() for p in proposals], [(IMAGE, IMAGE)] * 2)
        _expect_detections(report, found, [torch.zeros(3, IMAGE, IMAGE)] * 2, "the ROI heads' detections", 4)


def overfit_one_batch(fn, steps: int = OVERFIT_STEPS) -> None:
    """The first thing to try with a detector that does not learn: train it on one batch (two images) and
    follow each of its four losses. Prints every loss at the start, the middle and the end; fails, naming
    the stage to look at, if a loss is not finite or does not fall."""
    with Report("overfit one batch") as report:
        torch.manual_seed(0)
        model = report.call(fn, 4)
        images, targets = _two_images()
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        model.train()
        history: dict[str, list[float]] = {}
        for step in range(steps):
            losses = _call(report, f"training step {step}", model, *_copies(images, targets))
            if not isinstance(losses, dict) or set(losses) != set(LOSS_KEYS):
                report.expect(False, f"training step {step}: the model must return the losses {LOSS_KEYS}")
                return
            for name, value in losses.items():
                history.setdefault(name, []).append(float(value.detach()))
            total = sum(losses.values())
            if not math.isfinite(float(total.detach())):
                break
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        stages = {"loss_objectness": "stage 2: the anchors' labels and sample, and the objectness logits' order",
                  "loss_rpn_box_reg": "stage 2: the regression targets (encode_boxes, weights 1) of the positive "
                                      "anchors, in the anchors' order",
                  "loss_classifier": "stage 3: the proposals' labels and sample (the ground truth joins them)",
                  "loss_box_reg": "stage 3: the regression targets (weights 10, 10, 5, 5) and the deltas of each "
                                  "region's own class"}
        print(f"{steps} steps of Adam (learning rate {LEARNING_RATE:g}) on the same 2 images:")
        for name in LOSS_KEYS:
            values = history[name]
            middle = values[len(values) // 2]
            print(f"  {name:17s} {values[0]:8.4f} -> {middle:8.4f} -> {values[-1]:8.4f}")
            finite = all(math.isfinite(v) for v in values)
            report.expect(finite, f"{name} became {values[-1]}: look at {stages[name]}")
            start, end = sum(values[:5]) / 5, sum(values[-5:]) / 5
            report.expect(not finite or end < 0.7 * start or end < 1e-3,
                          f"{name} went from {start:.4f} to only {end:.4f} on one batch: look at {stages[name]}")
