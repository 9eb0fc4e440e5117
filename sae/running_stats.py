"""Streaming statistics of activations: memory fixed, whatever the number of steps and tokens.

Nothing here keeps an activation tensor: each ``update`` folds a batch into a few float64
scalars (moments: Chan et al.'s parallel merge of Welford's (count, mean, M2)) and a fixed-size
histogram whose range grows by merging bin pairs, which re-bins exactly. Quantiles come from the
histogram, within one bin of the exact (numpy, linear interpolation) value; ``torch.quantile`` is
never called, so its input-size limit is never hit.
"""
from __future__ import annotations

import math

import torch

# Elements per chunk when a batch is folded in: bounds the fp32 temporaries (16 MiB) whatever the input.
CHUNK_ELEMENTS = 1 << 22
# Histogram bins: quantiles are within (range / HISTOGRAM_BINS) of the exact value. Even, for pair merges.
HISTOGRAM_BINS = 4096


def _chunks(flat: torch.Tensor):
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        yield flat[start:start + CHUNK_ELEMENTS].float()


def chan_merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """(count, mean, M2) of two batches together from each one's own; floats or tensors (per channel)."""
    total = n_a + n_b
    delta = mean_b - mean_a
    return total, mean_a + delta * (n_b / total), m2_a + m2_b + delta * delta * (n_a * n_b / total)


class RunningMoments:
    """count, mean, std (population, ddof=0), min and max of a stream of numbers, in float64."""

    def __init__(self):
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # Σ (x − mean)²
        self.min = math.inf
        self.max = -math.inf

    def merge(self, count: int, mean: float, m2: float, lo: float, hi: float) -> None:
        """Fold in a batch given its own (count, mean, M2, min, max): Chan's pairwise update."""
        if count == 0:
            return
        self.count, self.mean, self.m2 = chan_merge(self.count, self.mean, self.m2, count, mean, m2)
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def update(self, values: torch.Tensor) -> None:
        for chunk in _chunks(values.detach().reshape(-1)):
            if chunk.numel() == 0:
                continue
            var, mean = torch.var_mean(chunk, correction=0)  # Welford inside torch: no cancellation
            lo, hi = torch.aminmax(chunk)
            n = chunk.numel()
            self.merge(n, float(mean), float(var) * n, float(lo), float(hi))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else math.nan


class StreamingHistogram:
    """A fixed number of equal bins over a range that doubles (merging bin pairs) to take new values.

    Doubling keeps old bin edges as new edges, so counts re-bin exactly; the range starts at the
    first batch's [min, max] and at most doubles per widening, so the final bin width is at most
    twice (max − min) / bins of everything seen.
    """

    def __init__(self, bins: int = HISTOGRAM_BINS):
        if bins < 2 or bins % 2:
            raise ValueError(f"histogram bins must be an even number >= 2, got {bins}")
        self.bins = bins
        self.counts = torch.zeros(bins, dtype=torch.float64)
        self.lo = self.width = None  # range [lo, lo + bins·width]

    @property
    def hi(self) -> float:
        return self.lo + self.bins * self.width

    @property
    def edges(self) -> torch.Tensor:
        return self.lo + self.width * torch.arange(self.bins + 1, dtype=torch.float64)

    def _widen(self, lo: float, hi: float) -> None:
        """Double the range (towards the side that needs it) until it holds [lo, hi]."""
        half = self.bins // 2
        while lo < self.lo or hi > self.hi:
            merged = self.counts.view(half, 2).sum(dim=1)
            self.counts = torch.zeros_like(self.counts)
            if hi > self.hi:   # keep lo: old bins fill the lower half
                self.counts[:half] = merged
            else:              # keep hi: old bins fill the upper half
                self.counts[half:] = merged
                self.lo -= self.bins * self.width
            self.width *= 2

    def update(self, values: torch.Tensor) -> None:
        for chunk in _chunks(values.detach().reshape(-1)):
            if chunk.numel() == 0:
                continue
            lo, hi = (float(v) for v in torch.aminmax(chunk))
            if self.lo is None:
                span = hi - lo if hi > lo else max(abs(lo), 1.0) * 1e-3
                self.lo, self.width = lo, span / self.bins * (1 + 1e-6)  # hi falls inside the last bin
            self._widen(lo, hi)
            counts = torch.histc(chunk, bins=self.bins, min=self.lo, max=self.hi)
            self.counts += counts.to(device="cpu", dtype=torch.float64)

    def quantiles(self, qs, lo: float | None = None, hi: float | None = None) -> list[float]:
        """numpy-style (linear interpolation) quantiles, each within one bin width of the exact value.

        The k-th smallest value is placed by linear interpolation inside its bin; numpy's answer
        x_(k) + frac·(x_(k+1) − x_(k)) is then the same interpolation of two estimates, each in its
        bin. ``lo``/``hi`` (the exact min and max) clamp the answer.
        """
        total = float(self.counts.sum())
        if total == 0:
            return [math.nan for _ in qs]
        cumulative = torch.cumsum(self.counts, 0)

        def order_statistic(rank: float) -> float:  # rank 0-based, value of the rank-th smallest
            b = int(torch.searchsorted(cumulative, torch.tensor(rank + 0.5, dtype=torch.float64)))
            b = min(b, self.bins - 1)
            before = float(cumulative[b - 1]) if b else 0.0
            inside = (rank + 0.5 - before) / float(self.counts[b])
            return self.lo + self.width * (b + inside)

        out = []
        for q in qs:
            position = q * (total - 1)
            k = math.floor(position)
            frac = position - k
            value = order_statistic(k)
            if frac:
                value += frac * (order_statistic(min(k + 1, total - 1)) - value)
            if lo is not None:
                value = max(value, lo)
            if hi is not None:
                value = min(value, hi)
            out.append(value)
        return out


QUANTILES = {"p25": 0.25, "p50": 0.50, "p75": 0.75, "p95": 0.95, "p99": 0.99}


class ActivationStats:
    """Everything measured at one site: value moments, quantiles, negative fraction, token-norm stats.

    ``update(x)`` takes activations [..., d] (any float dtype, any device); the last dimension is
    the channel: every other index is a token.
    """

    def __init__(self, bins: int = HISTOGRAM_BINS):
        self.values = RunningMoments()
        self.value_hist = StreamingHistogram(bins)
        self.norms = RunningMoments()
        self.norm_hist = StreamingHistogram(bins)
        self.negative = 0
        self.tokens = 0

    def update(self, x: torch.Tensor) -> None:
        flat = x.detach().reshape(-1, x.shape[-1])
        self.tokens += flat.shape[0]
        rows = max(1, CHUNK_ELEMENTS // max(flat.shape[1], 1))
        for start in range(0, flat.shape[0], rows):  # one fp32 chunk serves every statistic
            chunk = flat[start:start + rows].float()
            self.values.update(chunk)
            self.value_hist.update(chunk)
            self.negative += int((chunk < 0).sum())
            norms = torch.linalg.vector_norm(chunk, dim=-1)
            self.norms.update(norms)
            self.norm_hist.update(norms)

    def norm_quantiles(self, qs) -> list[float]:
        return self.norm_hist.quantiles(qs, self.norms.min, self.norms.max)

    def summary(self) -> dict[str, float]:
        v, n = self.values, self.norms
        quantiles = self.value_hist.quantiles(QUANTILES.values(), v.min, v.max)
        return {
            "tokens": self.tokens,
            "mean": v.mean, "std": v.std, "min": v.min, "max": v.max,
            **dict(zip(QUANTILES, quantiles)),
            "neg_frac": self.negative / v.count if v.count else math.nan,
            "norm_mean": n.mean, "norm_std": n.std, "norm_max": n.max,
        }
