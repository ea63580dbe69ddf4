"""Intersection over union (IoU): the explorer of chapter 2.

IoU itself is computed with ``torchvision.ops.box_iou``; writing it is part of assignment a02.
"""
from __future__ import annotations

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.ops import box_area, box_iou

from .draw import draw_boxes
from .widgets import Explorer

CANVAS = 160  # the explorer's square canvas, in pixels


class IoUExplorer(Explorer):
    """Two boxes and their IoU: box A is fixed, sliders move and resize box B.

    Box B is (x, y, x + w, y + h). The figure shades the intersection (a patch with gid
    "intersection", absent when the boxes do not overlap) and its title reads "IoU = 0.xxx",
    computed with ``torchvision.ops.box_iou``.
    """

    def __init__(self, box_a=(30, 40, 100, 110), x: int = 60, y: int = 60, w: int = 70, h: int = 60):
        self.box_a = torch.tensor([box_a], dtype=torch.float32)

        def slider(name, value, low, high):
            return widgets.IntSlider(value=value, min=low, max=high, description=name, continuous_update=False)

        super().__init__({"x": slider("x", x, 0, CANVAS - 10), "y": slider("y", y, 0, CANVAS - 10),
                          "w": slider("w", w, 1, CANVAS), "h": slider("h", h, 1, CANVAS)})

    def box_b(self, x: int, y: int, w: int, h: int) -> torch.Tensor:
        """float32[1, 4]: box B for these slider values, as (x1, y1, x2, y2)."""
        return torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)

    def draw(self, x: int, y: int, w: int, h: int) -> Figure:
        a, b = self.box_a, self.box_b(x, y, w, h)
        iou = float(box_iou(a, b)[0, 0])
        x1, y1 = torch.maximum(a[0, :2], b[0, :2]).tolist()
        x2, y2 = torch.minimum(a[0, 2:], b[0, 2:]).tolist()
        overlap = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        union = float(box_area(a)[0] + box_area(b)[0]) - overlap

        figure = Figure(figsize=(5.0, 5.4))
        ax = figure.subplots()
        if overlap > 0:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, facecolor="#f58231", alpha=0.45,
                                   edgecolor="none", gid="intersection"))
        draw_boxes(a, ax, "#4363d8", labels=["A"])
        draw_boxes(b, ax, "#e6194b", labels=["B"])
        ax.set_xlim(0, max(CANVAS, x + w) + 2)
        ax.set_ylim(max(CANVAS, y + h) + 2, 0)  # image coordinates: y grows downwards
        ax.set_aspect("equal")
        ax.set_title(f"IoU = {iou:.3f}")
        ax.set_xlabel(f"intersection {overlap:.0f} px$^2$, union {union:.0f} px$^2$")
        figure.tight_layout()
        return figure
