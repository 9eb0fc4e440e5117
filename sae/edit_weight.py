"""Weighting an edit per token: y = x + factor · (edited − x), exact where the factor is 0 or 1.

Regional masks, strength schedules and CFG-aware signs all scale one edit (the steered activations minus
the originals). Where the factor is 0 the original comes back bit for bit, where it is 1 the edited value;
a factor of -1 applies the same edit with the opposite sign. The blend runs in fp32 (fp64 for fp64) and is cast back.
"""
from __future__ import annotations

import torch


def weigh_edit(x: torch.Tensor, edited: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``x``, ``edited`` [..., tokens, d]; ``factor`` broadcastable to [..., tokens] (one weight per token)."""
    maths = torch.float64 if x.dtype == torch.float64 else torch.float32
    f = factor.to(device=x.device, dtype=maths).unsqueeze(-1)
    blended = (x.to(maths) + f * (edited.to(maths) - x.to(maths))).to(x.dtype)
    return torch.where(f == 0, x, torch.where(f == 1, edited, blended))
