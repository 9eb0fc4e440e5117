"""The tap callback that erases a concept: ``sae.erase``'s rule, through ``steer_by_rule``, pushes the chosen features down where they fire above
their threshold, error kept, every step; what it removed is kept per step for the report."""
from __future__ import annotations

import logging

import torch

from ...sae.erase import Removal, erase_deltas
from ..sites.sae_callback import SAECallback

log = logging.getLogger(__name__)


class EraseCallback(SAECallback):
    """Holds the SAE by reference (clones share it); ``steps`` maps each sampled sigma to what was removed."""

    def __init__(self, sae, features: list[int], threshold: torch.Tensor, target: torch.Tensor):
        super().__init__(sae)
        self.features = list(features)
        self.threshold, self.target = threshold, target
        self.steps: dict[float, Removal] = {}

    def __call__(self, activations: torch.Tensor, event) -> torch.Tensor | None:
        self.follow(activations)
        removals = []

        def rule(z):
            delta = erase_deltas(z, self.threshold, self.target)
            removals.append(Removal.of(z, delta))
            return delta

        out = self.sae.steer_by_rule(activations, self.features, rule)
        removal = sum(removals[1:], removals[0])
        self.steps[event.sigma] = self.steps[event.sigma] + removal if event.sigma in self.steps else removal
        log.debug("SAE Erase at sigma %.4g: %s tokens erased per feature", event.sigma, removal.erased.tolist())
        if not bool(removal.erased.any()):
            return None  # nothing was above its threshold: the activations flow on untouched
        return out
