"""The tap callback that erases a concept: ``sae.erase``'s rule, through ``steer_by_rule``, pushes the chosen features down where they fire above
their threshold, error kept, every step; with ``record``, what it removed is kept per step for the report."""
from __future__ import annotations

import torch

from ...sae.erase import Removal, erase_deltas
from ..sites.sae_callback import SAECallback


class EraseCallback(SAECallback):
    """Holds the SAE by reference (clones share it). With ``record`` (the node's preview), ``steps`` maps each
    sampled sigma to what was removed; the model the node returns erases without that bookkeeping, which
    would cost a device sync per forward for numbers nobody reads."""

    def __init__(self, sae, features: list[int], threshold: torch.Tensor, target: torch.Tensor, record: bool = False):
        super().__init__(sae)
        self.features = list(features)
        self.threshold, self.target = threshold, target
        self.steps: dict[float, Removal] | None = {} if record else None

    def _deltas(self, z: torch.Tensor) -> torch.Tensor:
        return erase_deltas(z, self.threshold, self.target)

    def __call__(self, activations: torch.Tensor, event) -> torch.Tensor | None:
        self.follow(activations)
        if self.steps is None:  # a zero Δz gives the activations back bit for bit
            return self.sae.steer_by_rule(activations, self.features, self._deltas)
        removals = []

        def rule(z):
            delta = self._deltas(z)
            removals.append(Removal.of(z, delta))
            return delta

        out = self.sae.steer_by_rule(activations, self.features, rule)
        removal = sum(removals[1:], removals[0])
        self.steps[event.sigma] = self.steps[event.sigma] + removal if event.sigma in self.steps else removal
        if not bool(removal.erased.any()):
            return None  # nothing was above its threshold: the activations flow on untouched
        return out
