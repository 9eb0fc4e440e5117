"""Heatmap images for scanned features: token-grid maps upscaled, coloured, overlaid and labelled.

Each map is scaled by its own maximum (the label says the maximum), so a weak feature's layout
is as visible as a strong one's. Colours run from black through purple and orange to pale yellow
(an inferno-like ramp, bright = strong); over an image the colour's opacity grows with the value,
so where the feature is silent the image shows through.

A video's map ([frames, h, w], Wan) is one image per feature: its frames tiled row by row, frame 0 at the
top left, on a near-square sheet (⌈√frames⌉ columns) with thin black gaps, each frame scaled by the
feature's maximum over all frames (so frames compare), the sheet at most ``MAX_SHEET_SIDE`` px on its longer
side. Over a video, each tile shows the frame of the same time (latent frame t of T over frame
t·(B−1)/(T−1) of B: Wan's 1 + 4k frames give frame 4t).
"""
from __future__ import annotations

import math

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
MAX_SHEET_SIDE = 1024  # px: a video's tiled frames are scaled down to fit (16 sheets of 1024² are 200 MB as floats)
SHEET_GAP = 2  # px of black between a video's tiles


def heatmap_values(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, *frames, h, w] token-grid maps -> [N, *frames, H, W] in 0..1: each feature's map divided by its own
    max (over all its frames), bilinear upscaled."""
    maps = maps.float().clamp_min(0)
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    scaled = maps / peak.view(-1, *[1] * (maps.dim() - 1))
    up = F.interpolate(scaled.reshape(-1, 1, *maps.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return up.reshape(*maps.shape[:-2], *size).clamp(0, 1)


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


def sheet_layout(frames: int, size: tuple[int, int]) -> tuple[int, int, tuple[int, int]]:
    """(rows, columns, tile size) of a video's sheet: ⌈√frames⌉ columns, tiles of ``size`` scaled down so the sheet's
    longer side fits ``MAX_SHEET_SIDE`` (never scaled up)."""
    columns = math.ceil(math.sqrt(frames))
    rows = math.ceil(frames / columns)
    scale = min(1.0, MAX_SHEET_SIDE / (rows * size[0] + (rows - 1) * SHEET_GAP),
                MAX_SHEET_SIDE / (columns * size[1] + (columns - 1) * SHEET_GAP))
    return rows, columns, (max(1, int(size[0] * scale)), max(1, int(size[1] * scale)))


def _frames_at(image: torch.Tensor, frames: int, size: tuple[int, int]) -> torch.Tensor:
    """[frames, H, W, 3]: for each latent frame the video frame of the same time, resized to ``size``."""
    video = image if image.dim() == 4 else image[None]
    picks = [round(t * (video.shape[0] - 1) / max(frames - 1, 1)) for t in range(frames)]
    chosen = video[picks, ..., :3].float().cpu().movedim(-1, 1)
    if tuple(chosen.shape[-2:]) != tuple(size):
        chosen = F.interpolate(chosen, size=size, mode="bilinear", align_corners=False, antialias=True)
    return chosen.movedim(1, -1)


def _tile(colours: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """[N, frames, h, w, 3] -> [N, rows·h + gaps, columns·w + gaps, 3]: frames row by row, black between."""
    n, frames, h, w, _ = colours.shape
    sheet = torch.zeros(n, rows * h + (rows - 1) * SHEET_GAP, columns * w + (columns - 1) * SHEET_GAP, 3)
    for t in range(frames):
        top, left = (t // columns) * (h + SHEET_GAP), (t % columns) * (w + SHEET_GAP)
        sheet[:, top:top + h, left:left + w] = colours[:, t]
    return sheet


def draw_heatmaps(maps: torch.Tensor, size: tuple[int, int], labels: list[str],
                  image: torch.Tensor | None = None) -> torch.Tensor:
    """IMAGE batch [N, H, W, 3] float 0..1: one labelled heatmap per map ([N, h, w]), over ``image`` ([H, W, 3], or
    a batch whose first image is used) if given. Video maps ([N, frames, h, w]) give one sheet of tiled frames
    per feature, over the video's frames (``image`` [B, H, W, 3]) if given."""
    if len(labels) != maps.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps but {len(labels)} labels")
    video = maps.dim() == 4
    if video:
        rows, columns, size = sheet_layout(maps.shape[1], size)
    values = heatmap_values(maps.cpu(), size)
    colours = colorize(values)
    if image is not None:
        alpha = OVERLAY_OPACITY * values.unsqueeze(-1)
        backdrop = _frames_at(image, maps.shape[1], size) if video else \
            (image[0] if image.dim() == 4 else image).float().cpu()[..., :3]
        colours = backdrop[None] * (1 - alpha) + colours * alpha
    if video:
        colours = _tile(colours, rows, columns)
    return torch.stack([_label(c, text) for c, text in zip(colours.clamp(0, 1), labels)]) if labels else \
        torch.zeros(0, *colours.shape[1:3], 3)
