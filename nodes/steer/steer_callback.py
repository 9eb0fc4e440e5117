"""The tap callback that steers: ``sae.steer`` on the selected activations, optionally weighted per token.

The weight of the edit on a token is schedule(percent) × sign(CFG half) × mask(token): the schedule is
read at the percent of the sigma being sampled, the sign is -1 on the negative pass when ``signed``,
the mask weighs the generated image's tokens (text and Kontext reference tokens are not on its grid:
they keep weight 1, steered only where ``tokens`` selects them).
"""
from __future__ import annotations

import torch

from ...sae import Edit
from ...sae.edit_weight import weigh_edit
from ...sae.region import as_mask_batch, token_weights, weights_for_rows
from ...sae.schedule import Keyframes, schedule_value
from ..sites.sae_callback import SAECallback

NEGATIVE = 1  # cond_or_uncond entry of the negative (unconditional) pass


class SteerCallback(SAECallback):
    """Holds the SAE by reference (clones share it); follows the model to its device."""

    def __init__(self, sae, edits: list[Edit], keep_error: bool = True, mask: torch.Tensor | None = None,
                 schedule: Keyframes = (), signed: bool = False):
        super().__init__(sae)
        self.edits = list(edits)
        self.keep_error = keep_error
        self.mask = None if mask is None else as_mask_batch(mask)
        self.schedule = tuple(schedule)
        self.signed = signed
        self._grid_weights: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def weighted(self) -> bool:
        return self.mask is not None or bool(self.schedule) or self.signed

    def __call__(self, activations: torch.Tensor, event) -> torch.Tensor | None:
        self.follow(activations)
        if not self.weighted:
            return self.sae.steer(activations, self.edits, keep_error=self.keep_error)
        factor = self.factor(activations, event)
        if not bool((factor != 0).any()):
            return None  # nothing to do in this forward: the activations flow on untouched
        steered = self.sae.steer(activations, self.edits, keep_error=self.keep_error)
        return weigh_edit(activations, steered, factor)

    def factor(self, activations: torch.Tensor, event) -> torch.Tensor:
        """[rows, tokens] weight of the edit for the handed-over activations."""
        rows, tokens = activations.shape[:2]
        factor = torch.full((rows, tokens), schedule_value(self.schedule, event.percent), dtype=torch.float32)
        per_chunk = event.batch // max(len(event.cond_or_uncond), 1)
        if self.signed:
            half = torch.tensor(event.cond_or_uncond)[event.rows.cpu() // per_chunk]
            factor[half == NEGATIVE] *= -1
        if self.mask is not None and event.image_tokens is not None:
            image = event.image_tokens
            factor[:, image] *= weights_for_rows(self._weights(event.grid), event.rows.cpu(), per_chunk)
        return factor

    def _weights(self, grid: tuple[int, int]) -> torch.Tensor:
        if grid not in self._grid_weights:
            self._grid_weights[grid] = token_weights(self.mask, grid)
        return self._grid_weights[grid]
