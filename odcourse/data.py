"""The course's synthetic detection data: coloured shapes on textured backgrounds.

Every image is made from ``(seed, index)`` alone, so a data set is the same on every machine and
needs no download. Objects are rectangles, ellipses and triangles (labels 1, 2, 3; 0 is the
background) with a tight box and an instance mask each. Later chapters and the capstone train on
it; generating one 128x128 image takes about a millisecond.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

CLASSES = ("background", "rectangle", "ellipse", "triangle")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float[H, W, 3] in [0, 1]: a colour gradient, stripes at a random angle and pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    corner = rng.uniform(0.25, 0.75, size=(2, 2, 3))  # colours at the four corners
    image = ((1 - yy)[..., None] * ((1 - xx)[..., None] * corner[0, 0] + xx[..., None] * corner[0, 1])
             + yy[..., None] * ((1 - xx)[..., None] * corner[1, 0] + xx[..., None] * corner[1, 1]))
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12) / size
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    image += 0.06 * stripes[..., None] + rng.normal(0, 0.03, size=image.shape)
    return image


def _shape_mask(kind: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """bool[H, W]: one shape of class `kind` at a random place and scale, inside the image."""
    width, height = rng.integers(size // 8, size // 2 + 1, size=2)
    x0 = rng.integers(0, size - width + 1)
    y0 = rng.integers(0, size - height + 1)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    u, v = (xx - x0) / width, (yy - y0) / height  # 0..1 inside the shape's box
    if kind == 1:
        mask = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    elif kind == 2:
        mask = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    else:  # an upright or upside-down isosceles triangle
        if rng.random() < 0.5:
            v = 1 - v
        mask = (v >= 0) & (v <= 1) & (np.abs(u - 0.5) <= 0.5 * v)
    return mask


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour: one channel high, one low, one anywhere."""
    channels = rng.permutation(3)
    colour = np.empty(3)
    colour[channels[0]] = rng.uniform(0.8, 1.0)
    colour[channels[1]] = rng.uniform(0.0, 0.2)
    colour[channels[2]] = rng.uniform(0.0, 1.0)
    return colour


def _box(mask: np.ndarray) -> list[float]:
    """The tight box (x1, y1, x2, y2) of a mask, in pixel-edge coordinates."""
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def make_scene(seed: int, index: int = 0, size: int = 128, min_objects: int = 1,
               max_objects: int = 4, max_overlap: float = 0.3) -> tuple[Tensor, dict[str, Tensor]]:
    """One image and its annotations, determined by (seed, index).

    Returns (image, target): image float32[3, size, size] in [0, 1]; target["boxes"] float32[N, 4]
    as (x1, y1, x2, y2) pixel edges, target["labels"] int64[N] in 1..3 (see CLASSES),
    target["masks"] uint8[N, size, size] (visible pixels of each object). Objects overlap with
    IoU at most `max_overlap` and each keeps at least 3/4 of its pixels visible.
    """
    rng = np.random.default_rng([seed, index, size])
    image = _background(rng, size)
    wanted = int(rng.integers(min_objects, max_objects + 1))
    masks: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(50 * wanted):  # rejection sampling of placements
        if len(masks) == wanted:
            break
        kind = int(rng.integers(1, 4))
        mask = _shape_mask(kind, rng, size)
        if mask.sum() < 16:
            continue
        box = torch.tensor([_box(mask)])
        if masks:
            others = torch.tensor([_box(m) for m in masks])
            if _iou(box, others).max() > max_overlap:
                continue
            visible = [m & ~mask for m in masks]
            if any(v.sum() < 0.75 * m.sum() for v, m in zip(visible, masks)):
                continue
            masks = visible
        masks.append(mask)
        labels.append(kind)
        shade = rng.uniform(0.85, 1.0, size=(size, size, 1))  # a little shading, so shapes are not flat
        image = np.where(mask[..., None], _colour(rng) * shade, image)
    image = np.clip(image, 0, 1)
    boxes = [_box(m) for m in masks]
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": torch.from_numpy(np.stack(masks) if masks else np.zeros((0, size, size), bool)).to(torch.uint8),
    }
    return torch.from_numpy(image.transpose(2, 0, 1).copy()).float(), target


def _iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes a[N,4] with b[M,4] (for placing shapes; the course's own box_iou is an exercise)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


class SyntheticShapes(torch.utils.data.Dataset):
    """`num_images` scenes of :func:`make_scene`; item i is (image, target) with
    target["image_id"] = i. Made on demand, so any size costs no memory up front."""

    def __init__(self, num_images: int, size: int = 128, seed: int = 0, min_objects: int = 1,
                 max_objects: int = 4):
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, not {num_images}")
        if size < 32:
            raise ValueError(f"size must be at least 32 pixels, not {size}")
        if not 0 <= min_objects <= max_objects:
            raise ValueError(f"need 0 <= min_objects <= max_objects, not {min_objects} and {max_objects}")
        self.num_images, self.size, self.seed = num_images, size, seed
        self.min_objects, self.max_objects = min_objects, max_objects

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} is outside 0..{self.num_images - 1}")
        image, target = make_scene(self.seed, index, self.size, self.min_objects, self.max_objects)
        target["image_id"] = torch.tensor(index)
        return image, target


def collate(batch):
    """For a DataLoader: lists of images and targets (detection targets differ in length)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
