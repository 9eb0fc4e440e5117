"""Streaming per-feature statistics from sparse SAE codes, and the ranking of features.

A scan sees many forwards (steps x batch rows x tokens). Per feature it keeps the sum of z_f and of
z_f², the number of tokens where z_f > 0 and the largest z_f, all filled from ``encode_sparse``'s
(values, indices) with ``index_add_`` / ``scatter_reduce_``: the cost is O(tokens x k), never
O(tokens x d_sae). For heatmaps it also keeps, per image position, the sum of every feature that
fired there, as sparse (position * d_sae + feature -> sum) pairs; only the rows of the features
that end up on top are ever made dense.
"""
from __future__ import annotations

import torch

# Pending sparse pairs are merged (unique keys, summed values) once this many have piled up.
MERGE_PAIRS = 1 << 20


class FeatureStats:
    """Sums, firing counts and maxima per feature over every token added; per-position sums for maps."""

    def __init__(self, d_sae: int, positions: int = 0):
        self.d_sae = int(d_sae)
        self.positions = int(positions)   # image positions (h * w tokens); 0 = no maps
        self.tokens = 0                    # tokens added (the denominator of means and frequencies)
        self.sum = self.sum_sq = self.fired = self.max = None
        self.position_count = None         # how often each position was seen
        self._keys: list[torch.Tensor] = []
        self._vals: list[torch.Tensor] = []
        self._pending = 0

    def _ensure(self, device):
        if self.sum is None:
            self.sum = torch.zeros(self.d_sae, dtype=torch.float64, device=device)
            self.sum_sq = torch.zeros(self.d_sae, dtype=torch.float64, device=device)
            self.fired = torch.zeros(self.d_sae, dtype=torch.int64, device=device)
            self.max = torch.zeros(self.d_sae, dtype=torch.float64, device=device)
            self.position_count = torch.zeros(max(self.positions, 0), dtype=torch.int64, device=device)

    @torch.no_grad()
    def add(self, values: torch.Tensor, indices: torch.Tensor, positions: torch.Tensor | None = None):
        """Add tokens' sparse codes: values/indices [n, m] (zeros allowed as padding); ``positions`` [n]
        gives each token's image position (-1: not an image token), or None to skip the maps."""
        if values.shape != indices.shape or values.dim() != 2:
            raise ValueError(f"values {tuple(values.shape)} and indices {tuple(indices.shape)} must both be [n, m]")
        self._ensure(values.device)
        n = values.shape[0]
        self.tokens += n
        if n == 0 or values.shape[1] == 0:
            return
        v = values.to(torch.float64).flatten()
        i = indices.flatten()
        # no boolean-mask indexing here: it synchronises and is slow on busy CPUs; zeros add nothing
        self.sum.index_add_(0, i, v)
        self.sum_sq.index_add_(0, i, v * v)
        self.fired.index_add_(0, i, (v > 0).long())  # TopK values after ReLU may be 0: listed, not firing
        self.max.scatter_reduce_(0, i, v, reduce="amax")
        if positions is not None and self.positions:
            self._add_positions(values, indices, positions)

    def _add_positions(self, values, indices, positions):
        positions = positions.to(values.device).long()
        if positions.shape != values.shape[:1]:
            raise ValueError(f"positions has shape {tuple(positions.shape)}, expected [{values.shape[0]}]")
        if int(positions.max()) >= self.positions:
            raise ValueError(f"an image position is out of range: the grid has {self.positions} positions")
        on_grid = positions >= 0
        self.position_count.index_add_(0, positions.clamp_min(0), on_grid.long())
        # key = position * d_sae + feature; -1 marks pairs that carry nothing (off the grid or not firing)
        keys = positions.unsqueeze(-1) * self.d_sae + indices
        keys = torch.where(on_grid.unsqueeze(-1) & (values > 0), keys, torch.full_like(keys, -1))
        self._keys.append(keys.flatten())
        self._vals.append(values.to(torch.float64).flatten())
        self._pending += keys.numel()
        if self._pending >= MERGE_PAIRS:
            self._merge()

    def _merge(self):
        if len(self._keys) <= 1:
            return
        keys, inverse = torch.unique(torch.cat(self._keys), return_inverse=True)
        vals = torch.zeros(keys.shape[0], dtype=torch.float64, device=keys.device)
        vals.index_add_(0, inverse, torch.cat(self._vals))
        self._keys, self._vals, self._pending = [keys], [vals], 0

    # ---- results ---------------------------------------------------------------------------------
    def _check(self):
        if self.sum is None or self.tokens == 0:
            raise ValueError("no activations were recorded: nothing reached the site (check site, block, tokens)")

    def mean(self) -> torch.Tensor:
        """Mean z_f over all tokens added, [d_sae] float64."""
        self._check()
        return self.sum / self.tokens

    def variance(self) -> torch.Tensor:
        """Variance of z_f over all tokens added (zeros included), [d_sae] float64."""
        mean = self.mean()
        return (self.sum_sq / self.tokens - mean * mean).clamp_min(0)

    def active_mean(self) -> torch.Tensor:
        """Mean z_f over the tokens where the feature fired (0 where it never did), [d_sae] float64."""
        self._check()
        return self.sum / self.fired.clamp_min(1).to(torch.float64)

    def frequency(self) -> torch.Tensor:
        """Fraction of tokens where z_f > 0, [d_sae] float64."""
        self._check()
        return self.fired.to(torch.float64) / self.tokens

    def position_means(self, features) -> torch.Tensor:
        """Mean z_f per image position for ``features``: [len(features), positions] float64 (0 where unseen)."""
        self._check()
        features = torch.as_tensor(features, dtype=torch.long, device=self.sum.device)
        if features.unique().numel() != features.numel():
            raise ValueError(f"position_means: features must be distinct, got {features.tolist()}")
        out = torch.zeros(features.shape[0], self.positions, dtype=torch.float64, device=self.sum.device)
        if not self.positions or not self._keys:
            return out
        self._merge()
        keys, vals = self._keys[0], self._vals[0]
        real = keys >= 0
        keys, vals = keys[real], vals[real]
        feature_of, position_of = keys % self.d_sae, keys // self.d_sae
        # row of each wanted feature (-1 = not wanted), then a single scatter into [m, positions]
        row_of = torch.full((self.d_sae,), -1, dtype=torch.long, device=keys.device)
        row_of[features] = torch.arange(features.shape[0], device=keys.device)
        rows = row_of[feature_of]
        keep = rows >= 0
        out.index_put_((rows[keep], position_of[keep]), vals[keep], accumulate=True)
        seen = self.position_count.clamp_min(1).to(torch.float64)
        return out / seen


def rank_features(score: torch.Tensor, top_n: int) -> torch.Tensor:
    """Indices of the ``top_n`` highest scores, highest first; ties go to the lower index."""
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    order = torch.sort(score, descending=True, stable=True).indices
    return order[: min(int(top_n), score.shape[0])]
