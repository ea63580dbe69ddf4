"""Chapter 3 (R-CNN): the pieces of a miniature R-CNN that runs on a CPU in about a minute.

R-CNN (Girshick et al., CVPR 2014) classifies every region proposal separately: it warps the
region to the CNN's input size, computes CNN features, scores them with one linear SVM per class
and refines the box with a per-class linear regressor. This module holds the parts the chapter
runs on the course's synthetic shapes (see :mod:`odcourse.data`):

- :func:`warp_regions` (torchvision's ``roi_align``) and :class:`TinyCNN` with its training loop;
- :func:`label_proposals` and :func:`max_iou_per_class`, the IoU rules that make training labels;
- :func:`save_features` / :func:`load_features`, the on-disk feature cache of training step 3;
- :func:`train_l2_svm` and :func:`train_svm_with_hard_negatives`, the per-class classifiers;
- :func:`ridge_lstsq`, the box regressor, and :data:`BOX_CODER` for its targets;
- :class:`StageTimer`, the cost per stage; :class:`BoxRegressionExplorer`.

Assignment a03 asks for the plain-hinge SVM, the closed-form ridge solution and the box coding
and warping functions written by hand; the code here deliberately solves those problems another
way (torchvision's ``BoxCoder`` and ``roi_align``, a squared hinge, a least-squares solver).
Every function returns its results on its inputs' device unless its docstring says otherwise.
"""
from __future__ import annotations

import math
import pathlib
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou, roi_align

from .draw import show_image
from .widgets import Explorer

#: Encodes a ground-truth box relative to a proposal as (t_x, t_y, t_w, t_h) and decodes
#: predicted deltas back to a box, with R-CNN's parametrisation (weights 1, 1, 1, 1).
#: ``decode_single`` clamps t_w and t_h at log(1000 / 16) so that exp() cannot overflow.
BOX_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))


def warp_regions(image: Tensor, boxes: Tensor, size: int, context: int = 0) -> Tensor:
    """Crop each box out of the image and resize it to size x size ("warp"), bilinearly.

    image: float[3, H, W]; boxes: float[K, 4] as (x1, y1, x2, y2) in pixel-edge coordinates
    (pixel (i, j) covers [j, j+1) x [i, i+1)), on the image's device. With `context` > 0 each box
    is first enlarged about its centre so that, once warped, the original box fills the central
    (size - 2 context)^2 pixels and `context` pixels of its surroundings frame it (R-CNN used 16
    of 227); parts outside the image read as 0. Returns float[K, 3, size, size] on the image's
    device, with the image's dtype. Uses ``torchvision.ops.roi_align`` with ``aligned=True``
    (which samples pixel centres at half-integers, as the boxes assume); each output pixel
    averages the bilinear samples in its cell, so large boxes are smoothed, not aliased. The
    aspect ratio is not kept: that is R-CNN's warping.
    """
    if not 0 <= 2 * context < size:
        raise ValueError(f"context must be in [0, size / 2), not {context}")
    if boxes.numel() == 0:
        return image.new_zeros((0, image.shape[0], size, size))
    boxes = boxes.to(image)
    if context:
        centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2
        half = half * size / (size - 2 * context)
        boxes = torch.cat([centre - half, centre + half], dim=1)
    return roi_align(image[None], [boxes], output_size=(size, size), spatial_scale=1.0,
                     sampling_ratio=-1, aligned=True)


def label_proposals(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, fg_iou: float = 0.5,
                    bg_iou: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """Label proposals for training by their best IoU with the ground truth.

    proposals: float[K, 4]; gt_boxes: float[G, 4] (both (x1, y1, x2, y2)); gt_labels: int64[G].
    Returns (labels int64[K], matched int64[K], iou float[K]): the class of the best-overlapping
    ground truth where that IoU >= fg_iou, 0 (background) where it is < bg_iou, -1 (ignored) in
    between; the index of that ground truth (0 when G == 0); and the IoU itself. R-CNN's
    fine-tuning uses fg_iou = bg_iou = 0.5: every proposal is an object or background.
    """
    k = proposals.shape[0]
    if gt_boxes.numel() == 0 or k == 0:
        zeros = torch.zeros(k, dtype=torch.int64, device=proposals.device)
        return zeros, zeros.clone(), torch.zeros(k, dtype=proposals.dtype, device=proposals.device)
    iou, matched = box_iou(proposals, gt_boxes.to(proposals)).max(dim=1)
    labels = gt_labels.to(proposals.device)[matched].clone()
    labels[iou < fg_iou] = -1
    labels[iou < bg_iou] = 0
    return labels, matched, iou


def max_iou_per_class(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, num_classes: int) -> Tensor:
    """float[K, num_classes]: column c is each proposal's best IoU with a ground truth of class c.

    Column 0 (background) and the columns of classes absent from the image are 0. Shapes as in
    :func:`label_proposals`. The SVM of class c takes its negatives where column c is < 0.3.
    """
    out = proposals.new_zeros((proposals.shape[0], num_classes))
    if gt_boxes.numel() == 0 or proposals.numel() == 0:
        return out
    iou = box_iou(proposals, gt_boxes.to(proposals))
    for c in gt_labels.unique().tolist():
        out[:, c] = iou[:, gt_labels.to(proposals.device) == c].max(dim=1).values
    return out


class TinyCNN(nn.Module):
    """A small AlexNet-like classifier for size x size crops (size divisible by 8).

    Three conv-ReLU-maxpool stages (16, 32, 64 channels) give ``pool5`` (the name R-CNN uses for
    AlexNet's last pooling layer), float[N, 64 * (size/8)^2]; a fully connected layer with ReLU
    gives ``fc6``, float[N, 128]; ``classifier`` maps fc6 to num_classes logits. Input float[N, 3,
    size, size] in [0, 1] on the module's device.
    """

    def __init__(self, num_classes: int, size: int = 32, seed: int = 0):
        super().__init__()
        if size % 8:
            raise ValueError(f"size must be divisible by 8, not {size}")
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the same initial weights on every machine
        layers: list[nn.Module] = []
        channels = [3, 16, 32, 64]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.conv = nn.Sequential(*layers)
        self.fc6 = nn.Sequential(nn.Flatten(), nn.Linear(64 * (size // 8) ** 2, 128), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(128, num_classes)
        torch.random.set_rng_state(generator_state)
        self.size = size

    def replace_classifier(self, num_classes: int, seed: int = 0) -> None:
        """A new, freshly initialised last layer with num_classes outputs (training step 2)."""
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        device = self.classifier.weight.device
        self.classifier = nn.Linear(self.classifier.in_features, num_classes).to(device)
        torch.random.set_rng_state(generator_state)

    def forward(self, x: Tensor) -> Tensor:
        """Logits float[N, num_classes]."""
        return self.classifier(self.fc6(self.conv(x)))

    @torch.no_grad()
    def features(self, x: Tensor, batch_size: int = 512) -> tuple[Tensor, Tensor]:
        """(pool5 float[N, D], fc6 float[N, 128]) in evaluation mode, without gradients."""
        self.eval()
        pool5, fc6 = [], []
        for start in range(0, x.shape[0], batch_size):
            p = self.conv(x[start:start + batch_size]).flatten(1)
            pool5.append(p)
            fc6.append(self.fc6(p))
        if not pool5:
            d = self.fc6[1].in_features
            return x.new_zeros((0, d)), x.new_zeros((0, self.fc6[1].out_features))
        return torch.cat(pool5), torch.cat(fc6)


def train_classifier(model: nn.Module, crops: Tensor, labels: Tensor, epochs: int = 3, batch_size: int = 64,
                     lr: float = 2e-3, seed: int = 0) -> list[float]:
    """Train `model` with softmax cross-entropy (Adam) on crops float[N, 3, s, s], labels int64[N].

    crops and labels are on the model's device. Mini-batches are drawn in an order fixed by
    `seed`. Returns the mean training loss of each epoch; leaves the model in evaluation mode.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(crops.shape[0], generator=generator).to(crops.device)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(crops[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / max(len(order), 1))
    model.eval()
    return losses


def save_features(path: str | pathlib.Path, **tensors: Tensor) -> int:
    """Write tensors (moved to the CPU) to one file, as R-CNN caches region features; return its size in bytes."""
    path = pathlib.Path(path)
    torch.save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, path)
    return path.stat().st_size


def load_features(path: str | pathlib.Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """The tensors :func:`save_features` wrote, by name, on `device`."""
    saved = torch.load(pathlib.Path(path), map_location=device, weights_only=True)
    return dict(saved)


def train_l2_svm(features: Tensor, targets: Tensor, lam: float = 1e-3, max_iter: int = 100) -> tuple[Tensor, Tensor]:
    """A binary linear classifier with the squared hinge loss (an "L2-SVM"), trained with L-BFGS.

    features: float[N, D]; targets: float[N] in {-1, +1}. Minimises
    lam / 2 * ||w||^2 + sum_i a_i max(0, 1 - y_i (w . x_i + b))^2 over w and an unregularised bias
    b (in float64), where a_i = 1 / (2 * number of examples of y_i's class): positives and
    negatives weigh the same however rare the positives are. The squared hinge is
    differentiable, which suits L-BFGS; assignment a03 trains the plain hinge instead.
    Returns (w float[D], b float[]) with the features' dtype and device.
    Deterministic: starts from zero.
    """
    x = features.detach().to(torch.float64)
    y = targets.detach().to(x)
    w = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
    positive = y > 0
    # Each class carries half of the loss, however few the positives are.
    weight = torch.where(positive, 0.5 / positive.sum().clamp(min=1), 0.5 / (~positive).sum().clamp(min=1))
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        optimizer.zero_grad()
        margin = (1 - y * (x @ w + b)).clamp(min=0)
        loss = 0.5 * lam * (w * w).sum() + (weight * margin * margin).sum()
        loss.backward()
        return loss

    if x.shape[0]:
        optimizer.step(objective)
    return w.detach().to(features.dtype), b.detach().to(features.dtype)


def train_svm_with_hard_negatives(positives: Tensor, negatives: Tensor, lam: float = 1e-3, rounds: int = 3,
                                  first: int = 200, per_round: int = 400, seed: int = 0
                                  ) -> tuple[Tensor, Tensor, list[int]]:
    """One class's SVM trained on all positives and a growing set of *hard* negatives.

    positives: float[P, D]; negatives: float[M, D] (same device). Starts with `first` negatives
    drawn at random (order fixed by `seed`); after each training round adds up to `per_round` of
    the remaining negatives that violate the margin (score > -1), the highest-scoring first, and
    retrains. R-CNN mines hard negatives the same way because the negatives of 5000 images do not
    fit in memory. Returns (w float[D], b float[], number of negatives used in each round).
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(negatives.shape[0], generator=generator).to(negatives.device)
    used = torch.zeros(negatives.shape[0], dtype=torch.bool, device=negatives.device)
    used[order[:first]] = True
    sizes = []
    for round_ in range(rounds):
        x = torch.cat([positives, negatives[used]])
        y = torch.cat([positives.new_ones(positives.shape[0]), -positives.new_ones(int(used.sum()))])
        w, b = train_l2_svm(x, y, lam)
        sizes.append(int(used.sum()))
        if round_ == rounds - 1:
            break
        scores = negatives @ w + b
        scores[used] = -math.inf
        hard = scores.argsort(descending=True)[:per_round]
        hard = hard[scores[hard] > -1]
        if hard.numel() == 0:
            break
        used[hard] = True
    return w, b, sizes


def ridge_lstsq(features: Tensor, targets: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """Ridge regression with an unregularised bias, solved as a least-squares problem.

    features Phi: float[N, D]; targets T: float[N, T]. Minimises ||Phi W + 1 b^T - T||^2 +
    lam ||W||^2 by solving the stacked system [[Phi, 1], [sqrt(lam) I, 0]] [W; b^T] = [T; 0] with
    ``torch.linalg.lstsq`` in float64 on the CPU (no normal equations are formed). Returns
    (W float[D, T], b float[T]) with the features' dtype, on the features' device.
    """
    phi = features.detach().cpu().to(torch.float64)
    t = targets.detach().cpu().to(torch.float64).reshape(phi.shape[0], -1)
    n, d = phi.shape
    top = torch.cat([phi, torch.ones(n, 1, dtype=phi.dtype)], dim=1)
    bottom = torch.cat([math.sqrt(lam) * torch.eye(d, dtype=phi.dtype), torch.zeros(d, 1, dtype=phi.dtype)], dim=1)
    rhs = torch.cat([t, torch.zeros(d, t.shape[1], dtype=phi.dtype)])
    solution = torch.linalg.lstsq(torch.cat([top, bottom]), rhs, driver="gels").solution
    return (solution[:d].to(features.dtype).to(features.device),
            solution[d].to(features.dtype).to(features.device))


class StageTimer:
    """Wall-clock seconds per named stage, summed over calls: ``with timer("CNN"): ...``.

    On CUDA the device is synchronised before and after each stage, so queued kernels are
    counted in the stage that launched them. ``seconds`` maps stage name to total seconds, in the
    order the stages were first timed.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.seconds[stage] += 0.0
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[stage] += time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class BoxRegressionExplorer(Explorer):
    """Apply deltas (dx, dy, dw, dh) to a proposal and see the box they decode to.

    image: float[3, H, W]; proposal, ground_truth: float[4] as (x1, y1, x2, y2). The figure shows
    the proposal (dashed), the ground truth (green) and the decoded box (red, from
    :data:`BOX_CODER`), with the targets that would move the proposal exactly onto the ground
    truth and the decoded box's IoU with it. Patches carry labels "proposal", "ground truth" and
    "decoded", so tests can read what was drawn.
    """

    def __init__(self, image: Tensor, proposal: Tensor, ground_truth: Tensor, dx: float = 0.0, dy: float = 0.0,
                 dw: float = 0.0, dh: float = 0.0):
        self.image = image
        self.proposal = torch.as_tensor(proposal, dtype=torch.float32).reshape(4).cpu()
        self.ground_truth = torch.as_tensor(ground_truth, dtype=torch.float32).reshape(4).cpu()

        def slider(name: str, value: float) -> widgets.FloatSlider:
            return widgets.FloatSlider(value=value, min=-1.0, max=1.0, step=0.025, description=name,
                                       continuous_update=False, readout_format=".3f")

        super().__init__({"dx": slider("dx", dx), "dy": slider("dy", dy), "dw": slider("dw", dw),
                          "dh": slider("dh", dh)})

    def targets(self) -> Tensor:
        """float[4]: (t_x, t_y, t_w, t_h) that move the proposal onto the ground truth."""
        return BOX_CODER.encode_single(self.ground_truth[None], self.proposal[None])[0]

    def decoded(self, dx: float, dy: float, dw: float, dh: float) -> Tensor:
        """float[4]: the box the deltas decode to from the proposal."""
        deltas = torch.tensor([[dx, dy, dw, dh]], dtype=torch.float32)
        return BOX_CODER.decode_single(deltas, self.proposal[None])[0]

    def draw(self, dx: float, dy: float, dw: float, dh: float) -> Figure:
        box = self.decoded(dx, dy, dw, dh)
        iou = float(box_iou(box[None], self.ground_truth[None])[0, 0])
        t = self.targets()
        figure = Figure(figsize=(6.4, 5.4))
        axes = figure.subplots()
        show_image(self.image, axes)
        for name, b, color, style in [("proposal", self.proposal, "#4363d8", "--"),
                                      ("ground truth", self.ground_truth, "#3cb44b", "-"),
                                      ("decoded", box, "#e6194b", "-")]:
            x1, y1, x2, y2 = b.tolist()
            axes.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linestyle=style,
                                     linewidth=2.2, label=name))
        height, width = self.image.shape[-2:]
        axes.set_xlim(0, width)
        axes.set_ylim(height, 0)
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, frameon=False)
        axes.set_title(f"deltas ({dx:.3f}, {dy:.3f}, {dw:.3f}, {dh:.3f}): IoU with the ground truth {iou:.2f}\n"
                       f"targets proposal -> ground truth: ({t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}, {t[3]:.3f})",
                       fontsize=10)
        figure.tight_layout()
        return figure
