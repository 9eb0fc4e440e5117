"""The tap callback that measures: folds each forward's activations into streaming statistics."""
from __future__ import annotations

import torch

from ..sae.running_stats import ActivationStats
from ..sae.sae_stats import SAEStats


class ScaleRecorder:
    """Never changes the activations (returns None); keeps no tensor past the call."""

    def __init__(self, stats: ActivationStats, sae=None, sae_stats: SAEStats | None = None):
        self.stats, self.sae, self.sae_stats = stats, sae, sae_stats

    def __deepcopy__(self, memo):  # clones of the patched model share the recorder and its SAE
        return self

    def to(self, device):
        if self.sae is not None and not isinstance(device, torch.dtype):  # the model's dtype is not the SAE's
            self.sae.to(device)
        return self

    def __call__(self, activations: torch.Tensor, event) -> None:
        self.stats.update(activations)
        if self.sae is not None:
            if self.sae.device != activations.device:
                self.sae.to(activations.device)
            self.sae_stats.update(self.sae, activations)
        return None
