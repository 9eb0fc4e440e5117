"""The tap callback that measures: folds each forward's activations into streaming statistics."""
from __future__ import annotations

import torch

from ...sae.running_stats import ActivationStats
from ...sae.sae_stats import SAEStats
from ..sites.sae_callback import SAECallback


class ScaleRecorder(SAECallback):
    """Never changes the activations (returns None); keeps no tensor past the call."""

    def __init__(self, name: str, stats: ActivationStats, sae=None, sae_stats: SAEStats | None = None):
        super().__init__(sae)  # clones of the patched model share the recorder and its SAE
        self.name, self.stats, self.sae_stats = name, stats, sae_stats

    def __call__(self, activations: torch.Tensor, event) -> None:
        try:
            self.stats.update(activations)
        except ValueError as err:
            raise ValueError(f"Measure Activation Scale at {self.name}: {err}") from err
        if self.sae is not None:
            self.follow(activations)
            self.sae_stats.update(self.sae, activations)
        return None
