"""A regional mask on the token grid: any mask size and aspect, averaged over each token's area.

A token's weight is the mean of the mask pixels its area covers (adaptive average pooling), so a token
whose area holds only zeros weighs exactly 0 and one fully inside a hard mask exactly 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def as_mask_batch(mask: torch.Tensor) -> torch.Tensor:
    """A MASK as ComfyUI passes it ([H, W] or [B, H, W]) -> float32 [B, H, W]; a one-line error otherwise."""
    if not torch.is_tensor(mask) or mask.dim() not in (2, 3) or mask.shape[-1] == 0 or mask.shape[-2] == 0:
        shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise ValueError(f"mask must be [H, W] or [batch, H, W], got {shape}")
    mask = mask.float()
    return mask.unsqueeze(0) if mask.dim() == 2 else mask


def token_weights(mask: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """[B, H, W] mask -> [B, h * w] weights, one per image token in row-major grid order. A video grid
    (frames, h, w) weighs every frame alike: [B, frames * h * w], frame after frame."""
    *frames, h, w = grid
    weights = F.adaptive_avg_pool2d(as_mask_batch(mask).unsqueeze(1), (h, w)).flatten(1)
    return weights.repeat(1, frames[0]) if frames else weights


def weights_for_rows(weights: torch.Tensor, rows: torch.Tensor, per_chunk: int) -> torch.Tensor:
    """The weights of each batch row: row r of a CFG-batched forward is latent r % per_chunk. One mask serves
    every latent; otherwise there must be one mask per latent."""
    if weights.shape[0] != 1 and weights.shape[0] != per_chunk:
        raise ValueError(f"mask: a batch of {weights.shape[0]} masks does not match the latent batch of "
                         f"{per_chunk}; give one mask or {per_chunk}")
    if weights.shape[0] == 1:
        return weights.expand(rows.shape[0], -1)
    return weights[(rows % per_chunk).to(weights.device)]
