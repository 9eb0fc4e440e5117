"""One optimiser step, the same for every Tiny World model."""
from __future__ import annotations

import torch


def optimise(loss: torch.Tensor, params, optimiser, schedule, max_grad_norm: float = 1.0) -> float:
    """Backward, clip the gradient norm, step the optimiser and its schedule; returns the loss."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimiser.step()
    schedule.step()
    return float(loss.detach())
