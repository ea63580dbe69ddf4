"""Drawing images and boxes with matplotlib, the same way in chapters, assignments and checks."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from torch import Tensor

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#469990", "#9a6324", "#800000", "#000075"]


def as_numpy_image(image) -> np.ndarray:
    """float[3, H, W] or [H, W, 3] tensor/array (or [H, W] grey) -> float[H, W, 3 or 1] for imshow."""
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.dtype == np.uint8:
        array = array / 255.0
    return np.clip(array.squeeze(), 0, 1) if array.dtype.kind == "f" else array


def show_image(image, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show an image without axis ticks; pixel (i, j) covers [j, j+1) x [i, i+1)."""
    ax = ax or plt.gca()
    array = as_numpy_image(image)
    height, width = array.shape[:2]
    ax.imshow(array, extent=(0, width, height, 0), interpolation="nearest",
              cmap="gray" if array.ndim == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def draw_boxes(boxes, ax: Axes | None = None, color: str | Sequence[str] = "#e6194b", labels=None,
               linewidth: float = 2.0, linestyle: str = "-", alpha: float = 1.0, fill: bool = False) -> Axes:
    """Draw boxes float[N, 4] as (x1, y1, x2, y2) on `ax`; `labels` (strings) are written above them."""
    ax = ax or plt.gca()
    boxes = torch.as_tensor(boxes, dtype=torch.float64).detach().cpu().reshape(-1, 4).tolist()
    colors = [color] * len(boxes) if isinstance(color, str) else list(color)
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        edge = colors[index % len(colors)] if colors else "#e6194b"
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=fill, edgecolor=edge,
                               facecolor=edge if fill else "none", linewidth=linewidth,
                               linestyle=linestyle, alpha=alpha))
        if labels is not None and index < len(labels) and labels[index]:
            ax.text(x1, y1, str(labels[index]), color="white", fontsize=8, va="bottom",
                    bbox={"facecolor": edge, "edgecolor": "none", "pad": 1, "alpha": 0.85})
    return ax


def show_detections(image, boxes, labels=None, scores=None, class_names: Sequence[str] | None = None,
                    ax: Axes | None = None, title: str | None = None) -> Axes:
    """An image with boxes coloured by label and captioned "name score"."""
    ax = show_image(image, ax, title)
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    labels = None if labels is None else [int(v) for v in torch.as_tensor(labels).reshape(-1)]
    colors = [PALETTE[(label or 0) % len(PALETTE)] for label in labels] if labels else "#e6194b"
    captions = []
    for index in range(len(boxes)):
        text = ""
        if labels is not None:
            text = class_names[labels[index]] if class_names else str(labels[index])
        if scores is not None:
            text = f"{text} {float(scores[index]):.2f}".strip()
        captions.append(text)
    draw_boxes(boxes, ax, colors, labels=captions)
    return ax
