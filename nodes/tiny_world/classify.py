"""The project's attribute classifier for Tiny World images: pixel rules, no learned weights.

- Object pixels: those whose RGB distance from the background exceeds ``OBJECT_DISTANCE``.
- Colour: the palette colour nearest to the object pixels' median RGB.
- Shape: three numbers describe the object pixels inside their bounding box: how much of the box they
  fill, and how much of its two top and two bottom corner cells (each a quarter of the box wide and
  high) they cover. Each shape's ideal mask is drawn in the same box and described the same way; the
  nearest description wins. A circle fills ~79 % of its box and leaves every corner empty, a square
  fills all of it, an upright triangle fills half and only its bottom corners; so a square drawn with
  rounded corners still reads as a square, and a slightly square circle as a circle.
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
    shape_distance: float = 0.0  # to the winning shape's ideal description


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
    box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    seen = describe_shape(mask, box)
    distances = {}
    for shape in SHAPES:
        ideal = object_mask(render(Scene("red", shape, cx, cy, half), size=image.shape[0]))
        distances[shape] = float(np.linalg.norm(seen - describe_shape(ideal, box)))
    best = min(distances, key=distances.get)
    return Reading(colour, best, mask, distances[best])


def describe_shape(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(fill of the box, fill of its top corner cells, fill of its bottom corner cells)."""
    y0, y1, x0, x1 = box
    inside = mask[y0:y1, x0:x1].astype(np.float32)
    h, w = inside.shape
    ch, cw = max(1, h // 4), max(1, w // 4)
    top = (inside[:ch, :cw].mean() + inside[:ch, -cw:].mean()) / 2
    bottom = (inside[-ch:, :cw].mean() + inside[-ch:, -cw:].mean()) / 2
    return np.array([inside.mean(), top, bottom], np.float32)


KEPT_IOU = 0.5


def object_kept(before: Reading, after: Reading, min_iou: float = KEPT_IOU) -> bool:
    """Whether ``after`` still has ``before``'s object where it was: the same shape reading, and object
    pixels overlapping with an intersection-over-union of at least ``min_iou`` (a smeared blob that
    happens to read as a circle is not a kept circle)."""
    union = (before.mask | after.mask).sum()
    return after.shape == before.shape and union > 0 and (before.mask & after.mask).sum() / union >= min_iou
