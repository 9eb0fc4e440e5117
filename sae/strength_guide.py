"""The suggested strength range for ``add`` / ``set`` at a site, from its measured statistics.

Adding s·d_f to a token moves it by s·‖d_f‖. Relative to the site's typical token (L2 norm ν),
a move of 10 % of ν is about the least that shows, and a move of a full ν replaces what the block
wrote: ``add`` ∈ [0.1, 1.0] · ν / ‖d‖ (‖d‖ = median decoder-row norm, 1 without an SAE).
``set`` puts z_f to a value; the feature's own activations are its natural scale, so with SAE
statistics ``set`` ∈ [1, 4] × the typical active value (median over fired features of the mean
activation when active). Without them, ``set`` on a token where f is off is an ``add``: same range.
"""
from __future__ import annotations

import math

import torch

ADD_FRACTION = (0.1, 1.0)     # of the mean token norm
SET_MULTIPLE = (1.0, 4.0)     # of the typical active feature value


def median_decoder_norm(sae) -> float:
    """Median L2 norm of the decoder rows (1 for unit-norm SAEs); no fp32 copy of W_dec."""
    return float(torch.linalg.vector_norm(sae.W_dec, dim=1, dtype=torch.float32).median())


def typical_active_value(feature_mean) -> float:
    """Median over features that fired of their mean activation when active; NaN when none fired."""
    fired = [v for v in feature_mean if not math.isnan(v)]
    return float(torch.tensor(fired, dtype=torch.float64).median()) if fired else math.nan


def suggested_strengths(summary: dict, decoder_norm: float = 1.0) -> dict[str, tuple[float, float]]:
    """{"add": (low, high), "set": (low, high)} in absolute units at the site of ``summary``."""
    unit = summary["norm_mean"] / decoder_norm
    add = (ADD_FRACTION[0] * unit, ADD_FRACTION[1] * unit)
    typical = typical_active_value(summary["feature_mean"]) if "feature_mean" in summary else math.nan
    set_ = (SET_MULTIPLE[0] * typical, SET_MULTIPLE[1] * typical) if not math.isnan(typical) else add
    return {"add": add, "set": set_}
