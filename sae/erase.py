"""Concept erasure (SAeUron's rule): on tokens where a feature fires above its threshold, push it to a target.

Per feature f and token: Δz_f = target_f − z_f where z_f > threshold_f, else 0 (``erase_deltas``). Per image
(``erase_deltas_per_image``): every token of an image whose mean z_f over its tokens exceeds the threshold is
pushed, the others are left alone; for concepts that cover the whole picture (a colour, a style), where
erasing token by token leaves a patchwork that the model redraws as another shape. The threshold is the
feature's mean on neutral prompts (it fires there too, and is left alone up to that level) or a value; the
target is −multiplier × the feature's mean where it fires for the concept (past zero, so that what the
blocks after the site add back does not restore it), or 0. Applied with the error kept
(``SparseAutoencoder.steer_by_rule``), every step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def erase_deltas(z: torch.Tensor, threshold: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Δz [n, F] for z [n, F], threshold [F], target [F]."""
    threshold = threshold.to(device=z.device, dtype=z.dtype)
    target = target.to(device=z.device, dtype=z.dtype)
    return torch.where(z > threshold, target - z, torch.zeros_like(z))


def erase_deltas_per_image(z: torch.Tensor, threshold: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Δz [images, n, F] for z [images, n, F] (n tokens each), threshold [F], target [F]."""
    threshold = threshold.to(device=z.device, dtype=z.dtype)
    target = target.to(device=z.device, dtype=z.dtype)
    return torch.where(z.mean(1, keepdim=True) > threshold, target - z, torch.zeros_like(z))


@dataclass
class Removal:
    """What one forward's erasure removed, per feature: tokens pushed and the sum of (z − target) over them."""
    tokens: int                # tokens handed over
    erased: torch.Tensor       # [F] int64: tokens where the feature was above its threshold
    removed: torch.Tensor      # [F] float64: Σ (z − target) over those tokens

    @classmethod
    def of(cls, z: torch.Tensor, delta: torch.Tensor) -> "Removal":
        hit = delta != 0
        return cls(z.shape[0], hit.sum(0).cpu().long(), (-delta).sum(0).double().cpu())

    def __add__(self, other: "Removal") -> "Removal":
        return Removal(self.tokens + other.tokens, self.erased + other.erased, self.removed + other.removed)
