"""The tap callback that steers: ``sae.steer`` on the selected activations."""
from __future__ import annotations

import torch

from ..sae import Edit


class SteerCallback:
    """Holds the SAE by reference (clones share it); follows the model to its device."""

    def __init__(self, sae, edits: list[Edit], keep_error: bool = True):
        self.sae = sae
        self.edits = list(edits)
        self.keep_error = keep_error

    def __deepcopy__(self, memo):
        return self

    def to(self, device):
        if not isinstance(device, torch.dtype):  # the model's dtype (maybe fp8) is not the SAE's
            self.sae.to(device)
        return self

    def __call__(self, activations: torch.Tensor, event) -> torch.Tensor:
        if self.sae.device != activations.device:
            self.sae.to(activations.device)
        return self.sae.steer(activations, self.edits, keep_error=self.keep_error)
