"""Which features tell two sets of activations apart: the ranking behind SAE Find Features.

Given streaming statistics of a concept set (A) and a neutral set (B), per feature f:
- normalised difference: (mean_A − mean_B) / sqrt((var_A + var_B) / 2 + ε), a standardised effect size
  over tokens. An always-on feature with a large mean and spread does not win by its size alone: a feature
  firing on a fraction p of tokens at one value c scores sqrt(2p / (1 − p)) against a silent one, whatever c;
- frequency difference: freq_A − freq_B (fraction of tokens where z_f > 0): an always-on feature scores 0;
- mean difference: mean_A − mean_B, unnormalised (what SAE Feature Scan's contrast ranks by).
Strengths for the steering line are the concept set's mean activation where the feature fires, so that
``strength`` 1 means "as strongly as the concept itself drives it".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .feature_stats import FeatureStats, rank_features
from .labels import describe

RANKINGS = ("normalised difference", "frequency difference", "mean difference")
VARIANCE_EPS = 1e-12  # keeps never-firing features (zero spread in both sets) at score 0, not 0/0


def contrast_scores(concept: FeatureStats, neutral: FeatureStats, rank_by: str) -> torch.Tensor:
    """Score per feature, [d_sae] float64: higher = more the concept's."""
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by {rank_by!r} is not one of {', '.join(RANKINGS)}")
    if concept.d_sae != neutral.d_sae:
        raise ValueError(f"the two sets were measured with SAEs of {concept.d_sae} and {neutral.d_sae} features")
    if rank_by == "frequency difference":
        return concept.frequency() - neutral.frequency().to(concept.sum.device)
    diff = concept.mean() - neutral.mean().to(concept.sum.device)
    if rank_by == "mean difference":
        return diff
    spread = (concept.variance() + neutral.variance().to(concept.sum.device)) / 2
    return diff / torch.sqrt(spread + VARIANCE_EPS)


@dataclass
class Contrast:
    features: list[int]            # best first
    score: list[float]
    rank_by: str
    concept_mean: list[float]      # mean z_f over the concept set's tokens
    neutral_mean: list[float]
    concept_frequency: list[float]
    neutral_frequency: list[float]
    concept_active_mean: list[float]  # mean z_f where it fires in the concept set: the strength unit

    def steer_line(self, strength: float = 1.0, count: int | None = None) -> str:
        """``f1:s1, f2:s2`` for the features input: s = strength × the concept's mean where f fires."""
        chosen = [(f, m) for f, s, m in zip(self.features, self.score, self.concept_active_mean) if s > 0]
        return ", ".join(f"{f}:{_short(strength * m)}" for f, m in chosen[:count])

    def table(self, labels: dict[int, str] | None = None) -> str:
        head = ["rank", "feature", "score", "mean A", "mean B", "freq A", "freq B", "active mean A"]
        rows = [[str(r + 1), describe(f, labels or {}), f"{self.score[r]:.4g}", f"{self.concept_mean[r]:.4g}",
                 f"{self.neutral_mean[r]:.4g}", f"{self.concept_frequency[r]:.3f}", f"{self.neutral_frequency[r]:.3f}",
                 f"{self.concept_active_mean[r]:.4g}"] for r, f in enumerate(self.features)]
        widths = [max(len(c) for c in col) for col in zip(head, *rows)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [head] + rows]
        lines.insert(0, f"features by {self.rank_by}, concept set A against neutral set B")
        return "\n".join(lines)


def _short(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "0"


def contrast(concept: FeatureStats, neutral: FeatureStats, top_n: int, rank_by: str = RANKINGS[0]) -> Contrast:
    """Rank every feature by ``rank_by`` and gather the top ``top_n`` features' numbers."""
    score = contrast_scores(concept, neutral, rank_by)
    top = rank_features(score, top_n)
    pick = lambda t: [float(x) for x in t.to(score.device)[top].cpu()]  # noqa: E731
    return Contrast(
        features=[int(f) for f in top.cpu()], score=pick(score), rank_by=rank_by,
        concept_mean=pick(concept.mean()), neutral_mean=pick(neutral.mean()),
        concept_frequency=pick(concept.frequency()), neutral_frequency=pick(neutral.frequency()),
        concept_active_mean=pick(concept.active_mean()))
