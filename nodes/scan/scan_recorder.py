"""The tap callback that records: sparse SAE codes of the selected activations into ``FeatureStats``."""
from __future__ import annotations

import math

import torch

from ...sae.feature_stats import FeatureStats
from ..sites.sae_callback import SAECallback


class ScanRecorder(SAECallback):
    """Encodes what the tap hands over and accumulates it; returns None, so nothing is changed.

    Holds the SAE by reference (clones share it) and follows the model to its device. The grid
    (image positions: (h, w), or (frames, h, w) for a video) is learnt from the first forward; every later
    one must agree. Positions are the grid's cells in row-major order, frame after frame.
    """

    def __init__(self, sae):
        super().__init__(sae)
        self.stats: FeatureStats | None = None
        self.grid: tuple[int, ...] | None = None
        self.forwards = 0

    def __call__(self, activations: torch.Tensor, event) -> None:
        self.follow(activations)
        if self.grid is None:
            self.grid = tuple(event.grid)
            self.stats = FeatureStats(self.sae.d_sae, positions=math.prod(self.grid))
        elif tuple(event.grid) != self.grid:
            raise ValueError(f"the image grid changed during the scan ({self.grid} -> {tuple(event.grid)} tokens)")
        rows, tokens, _ = activations.shape
        values, indices = self.sae.encode_sparse(activations)  # [rows, tokens, m]: never [tokens, d_sae]
        self.stats.add(values.flatten(0, 1), indices.flatten(0, 1), self._positions(event, tokens).repeat(rows))
        self.forwards += 1
        return None

    @staticmethod
    def _positions(event, tokens: int) -> torch.Tensor:
        """Image position (row-major in the token grid) of each handed-over token, -1 for the others."""
        positions = torch.full((tokens,), -1, dtype=torch.long, device=event.rows.device)
        image = event.image_tokens
        if image is not None:
            start, stop = image.start, min(image.stop, tokens)
            positions[start:stop] = torch.arange(stop - start, device=positions.device)
        return positions
