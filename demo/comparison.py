"""The demo's side-by-side picture: unsteered | steered | where they differ (amplified)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

GAP = 8  # white pixels between panels


def pixel_difference(a: Path, b: Path) -> np.ndarray:
    """Per-pixel mean absolute RGB difference, in 0-255 units."""
    first = np.asarray(Image.open(a).convert("RGB"), dtype=np.float64)
    second = np.asarray(Image.open(b).convert("RGB"), dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"images {a} {first.shape} and {b} {second.shape} differ in size")
    return np.abs(first - second).mean(axis=-1)


def write_comparison(unsteered: Path, steered: Path, path: Path) -> float:
    """Write the three panels to ``path``; returns the mean absolute pixel difference (0-255)."""
    difference = pixel_difference(unsteered, steered)
    peak = max(float(difference.max()), 1e-9)
    # difference panel: black = unchanged, white = the largest change; the square root lifts small
    # changes into view (attention spreads a local edit thinly over the other tokens)
    heat = Image.fromarray((255 * np.sqrt(difference / peak)).astype(np.uint8)).convert("RGB")
    panels = [Image.open(unsteered).convert("RGB"), Image.open(steered).convert("RGB"), heat]
    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    canvas = Image.new("RGB", (width, panels[0].height), "white")
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + GAP
    canvas.save(path)
    return float(difference.mean())
