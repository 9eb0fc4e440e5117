"""Heatmap images for scanned features: token-grid maps upscaled, coloured, overlaid and labelled.

Each map is scaled by its own maximum (the label says the maximum), so a weak feature's layout
is as visible as a strong one's. Colours run from black through purple and orange to pale yellow
(an inferno-like ramp, bright = strong); over an image the colour's opacity grows with the value,
so where the feature is silent the image shows through.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

# (value, RGB) anchors of the colour ramp, linearly interpolated in between
RAMP = torch.tensor([
    [0.00, 0.00, 0.00, 0.02],
    [0.25, 0.34, 0.06, 0.43],
    [0.50, 0.73, 0.21, 0.33],
    [0.75, 0.98, 0.55, 0.04],
    [1.00, 0.99, 1.00, 0.64],
])
OVERLAY_OPACITY = 0.7  # colour opacity at a map's maximum when drawn over an image


def heatmap_values(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, h, w] token-grid maps -> [N, H, W] in 0..1: each divided by its own max, bilinear upscaled."""
    maps = maps.float().clamp_min(0)
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    scaled = maps / peak[:, None, None]
    up = F.interpolate(scaled.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return up.squeeze(1).clamp(0, 1)


def _ramp_table(levels: int = 256) -> torch.Tensor:
    """[levels, 3] colours of the ramp, sampled evenly from 0 to 1."""
    stops, colours = RAMP[:, 0].contiguous(), RAMP[:, 1:]
    values = torch.linspace(0, 1, levels)
    upper = torch.searchsorted(stops, values).clamp(1, len(stops) - 1)
    lo, hi = stops[upper - 1], stops[upper]
    t = ((values - lo) / (hi - lo)).unsqueeze(-1)
    return colours[upper - 1] * (1 - t) + colours[upper] * t


RAMP_TABLE = _ramp_table()


def colorize(values: torch.Tensor) -> torch.Tensor:
    """[...] values in 0..1 -> [..., 3] RGB on the ramp (a 256-level lookup: cheap on big images)."""
    levels = RAMP_TABLE.shape[0] - 1
    return RAMP_TABLE[(values.clamp(0, 1) * levels).round().long()]


def _label(image: torch.Tensor, text: str) -> torch.Tensor:
    """Write ``text`` in the top-left corner on a dark box (PIL)."""
    h, w = image.shape[:2]
    pil = Image.fromarray((image.numpy() * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    try:
        font = ImageFont.load_default(size=max(10, min(h, w) // 14))
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((3, 2), text, font=font)
    draw.rectangle((0, 0, right + 3, bottom + 3), fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255), font=font)
    return torch.from_numpy(np.asarray(pil).astype(np.float32) / 255.0)


def draw_heatmaps(maps: torch.Tensor, size: tuple[int, int], labels: list[str],
                  image: torch.Tensor | None = None) -> torch.Tensor:
    """IMAGE batch [N, H, W, 3] float 0..1: one labelled heatmap per map, over ``image`` [H, W, 3] if given."""
    if len(labels) != maps.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps but {len(labels)} labels")
    values = heatmap_values(maps.cpu(), size)
    colours = colorize(values)
    if image is not None:
        alpha = OVERLAY_OPACITY * values.unsqueeze(-1)
        colours = image.float().cpu()[None, ..., :3] * (1 - alpha) + colours * alpha
    return torch.stack([_label(c, text) for c, text in zip(colours.clamp(0, 1), labels)]) if labels else \
        torch.zeros(0, size[0], size[1], 3)
