"""The result of a feature scan: the top features' numbers, their maps, a table and a paste line."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .feature_stats import FeatureStats, rank_features
from .labels import describe


@dataclass
class ScanResult:
    features: list[int]                 # top features, best first
    mean: list[float]                   # mean z_f over the recorded tokens
    frequency: list[float]              # fraction of recorded tokens with z_f > 0
    max: list[float]                    # largest z_f seen
    maps: torch.Tensor                  # [N, *grid] mean z_f per image position (float32, CPU)
    grid: tuple[int, ...]               # (h, w) image tokens; (frames, h, w) for a video
    token_count: int                    # token observations behind the numbers (tokens x rows x forwards)
    contrast_mean: list[float] | None = None   # same features' means for the contrast prompt
    contrast_token_count: int = 0
    meta: dict = field(default_factory=dict)    # site, block, tokens, steps, seed, ... (for the record)

    @property
    def difference(self) -> list[float] | None:
        if self.contrast_mean is None:
            return None
        return [m - c for m, c in zip(self.mean, self.contrast_mean)]

    @property
    def ranked_by(self) -> str:
        return "mean - contrast mean" if self.contrast_mean is not None else "mean"

    def steer_line(self) -> str:
        """The features worth steering (score > 0), ready for SAEFluxSteer's ``features`` input."""
        scores = self.difference if self.contrast_mean is not None else self.mean
        return ", ".join(str(f) for f, s in zip(self.features, scores) if s > 0)

    def table(self, labels: dict[int, str] | None = None) -> str:
        """The ranked features as text; ``labels`` (the SAE's) name features next to their indices."""
        head = ["rank", "feature", "mean", "freq", "max"]
        if self.contrast_mean is not None:
            head += ["contrast", "diff"]
        rows = []
        for r, f in enumerate(self.features):
            row = [str(r + 1), describe(f, labels or {}), f"{self.mean[r]:.5g}", f"{self.frequency[r]:.4f}", f"{self.max[r]:.5g}"]
            if self.contrast_mean is not None:
                row += [f"{self.contrast_mean[r]:.5g}", f"{self.difference[r]:.5g}"]
            rows.append(row)
        widths = [max(len(c) for c in col) for col in zip(head, *rows)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [head] + rows]
        where = ", ".join(f"{k}={v}" for k, v in self.meta.items())
        lines.insert(0, f"top {len(self.features)} features by {self.ranked_by} over {self.token_count} tokens"
                        + (f" ({where})" if where else ""))
        lines.append("")
        lines.append(f"features: {self.steer_line()}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = {"features": list(self.features), "mean": list(self.mean), "frequency": list(self.frequency),
               "max": list(self.max), "grid": list(self.grid), "token_count": self.token_count, "ranked_by": self.ranked_by,
               "maps": self.maps.tolist(), "steer_line": self.steer_line(), **self.meta}
        if self.contrast_mean is not None:
            out.update(contrast_mean=list(self.contrast_mean), difference=self.difference,
                       contrast_token_count=self.contrast_token_count)
        return out


def scan_result(stats: FeatureStats, top_n: int, grid: tuple[int, ...], contrast: FeatureStats | None = None,
                meta: dict | None = None) -> ScanResult:
    """Rank by mean z_f (or by mean minus the contrast's mean) and gather the top features' numbers. ``grid``:
    (h, w), or (frames, h, w) for a video (positions frame after frame, each frame row-major)."""
    mean = stats.mean()
    score = mean if contrast is None else mean - contrast.mean().to(mean.device)
    top = rank_features(score, top_n)
    grid = tuple(int(n) for n in grid)
    maps = stats.position_means(top)
    maps = (maps.reshape(len(top), *grid) if maps.shape[1] == math.prod(grid)
            else torch.zeros(len(top), *grid, dtype=maps.dtype))
    pick = lambda t: [float(x) for x in t[top].cpu()]  # noqa: E731
    return ScanResult(
        features=[int(f) for f in top.cpu()], mean=pick(mean), frequency=pick(stats.frequency()),
        max=pick(stats.max), maps=maps.float().cpu(), grid=grid, token_count=stats.tokens,
        contrast_mean=None if contrast is None else pick(contrast.mean().to(mean.device)),
        contrast_token_count=0 if contrast is None else contrast.tokens, meta=dict(meta or {}))
