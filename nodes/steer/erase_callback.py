"""The tap callback that erases a concept: ``sae.erase``'s rule pushes the chosen features down where they fire above
their threshold (per token, through ``steer_by_rule``; or per image, every token of an image whose mean is above,
through ``add_feature_deltas``), error kept, every step; with ``record``, what it removed is kept per step for the report."""
from __future__ import annotations

import torch

from ...sae.erase import Removal, erase_deltas, erase_deltas_per_image
from ..sites.sae_callback import SAECallback


class EraseCallback(SAECallback):
    """Holds the SAE by reference (clones share it). With ``record`` (the node's preview), ``steps`` maps each
    sampled sigma to what was removed; the model the node returns erases without that bookkeeping, which
    would cost a device sync per forward for numbers nobody reads. ``per_image``: the threshold is read
    against each image's mean over the tokens handed over (rows of the activations)."""

    def __init__(self, sae, features: list[int], threshold: torch.Tensor, target: torch.Tensor, record: bool = False,
                 per_image: bool = False):
        super().__init__(sae)
        self.features = list(features)
        self.threshold, self.target = threshold, target
        self.per_image = per_image
        self.steps: dict[float, Removal] | None = {} if record else None

    def _erase(self, activations: torch.Tensor, removals: list[Removal] | None) -> torch.Tensor:
        def rule(z):
            delta = erase_deltas(z, self.threshold, self.target)
            if removals is not None:
                removals.append(Removal.of(z, delta))
            return delta

        if not self.per_image:  # a zero Δz gives the activations back bit for bit
            return self.sae.steer_by_rule(activations, self.features, rule)
        images = activations.reshape(-1, *activations.shape[-2:]) if activations.dim() > 2 else activations[None]
        z = self.sae.feature_values(images, self.features)
        delta = erase_deltas_per_image(z, self.threshold, self.target)
        if removals is not None:
            removals.append(Removal.of(z.reshape(-1, z.shape[-1]), delta.reshape(-1, delta.shape[-1])))
        return self.sae.add_feature_deltas(images, self.features, delta).reshape(activations.shape)

    def __call__(self, activations: torch.Tensor, event) -> torch.Tensor | None:
        self.follow(activations)
        if self.steps is None:
            return self._erase(activations, None)
        removals = []
        out = self._erase(activations, removals)
        removal = sum(removals[1:], removals[0])
        self.steps[event.sigma] = self.steps[event.sigma] + removal if event.sigma in self.steps else removal
        if not bool(removal.erased.any()):
            return None  # nothing was above its threshold: the activations flow on untouched
        return out
