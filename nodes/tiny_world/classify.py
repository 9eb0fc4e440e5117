"""The project's attribute classifier for Tiny World images: pixel rules, no learned weights.

- Object pixels: those whose RGB distance from the background exceeds ``OBJECT_DISTANCE``.
- Colour: the palette colour nearest to the object pixels' median RGB.
- Shape: each shape's ideal mask is drawn in the object's bounding box; the shape with the highest
  intersection-over-union with the object pixels wins (circle fills ~79 % of its box, square 100 %,
  triangle 50 %, and the IoU also sees where the pixels are).
An image with fewer than ``MIN_OBJECT_PIXELS`` object pixels has no object (colour and shape None).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import BACKGROUND, COLOURS, SHAPES, Scene, render

OBJECT_DISTANCE = 80.0
MIN_OBJECT_PIXELS = 40


@dataclass(frozen=True)
class Reading:
    colour: str | None
    shape: str | None
    mask: np.ndarray  # bool [H, W]: the object's pixels
    shape_iou: float = 0.0


def object_mask(image: np.ndarray) -> np.ndarray:
    distance = np.linalg.norm(image.astype(np.float32) - np.asarray(BACKGROUND, np.float32), axis=-1)
    return distance > OBJECT_DISTANCE


def classify(image: np.ndarray) -> Reading:
    """Read colour and shape from a uint8 RGB image [H, W, 3]."""
    mask = object_mask(image)
    if mask.sum() < MIN_OBJECT_PIXELS:
        return Reading(None, None, mask)
    median = np.median(image[mask].astype(np.float32), axis=0)
    colour = min(COLOURS, key=lambda c: float(np.linalg.norm(median - np.asarray(COLOURS[c], np.float32))))
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    half = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) / 2
    best, best_iou = None, -1.0
    for shape in SHAPES:
        ideal = object_mask(render(Scene("red", shape, cx, cy, half), size=image.shape[0]))
        iou = float((ideal & mask).sum() / max((ideal | mask).sum(), 1))
        if iou > best_iou:
            best, best_iou = shape, iou
    return Reading(colour, best, mask, best_iou)
