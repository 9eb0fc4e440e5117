"""The tap callback that steers: ``sae.steer`` on the selected activations."""
from __future__ import annotations

import torch

from ..sae import Edit
from .sae_callback import SAECallback


class SteerCallback(SAECallback):
    """Holds the SAE by reference (clones share it); follows the model to its device."""

    def __init__(self, sae, edits: list[Edit], keep_error: bool = True):
        super().__init__(sae)
        self.edits = list(edits)
        self.keep_error = keep_error

    def __call__(self, activations: torch.Tensor, event) -> torch.Tensor:
        self.follow(activations)
        return self.sae.steer(activations, self.edits, keep_error=self.keep_error)
