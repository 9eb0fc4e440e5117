"""The ``report`` output of Measure Activation Scale: the statistics, readable, with suggested strengths."""
from __future__ import annotations

import math

from ...sae.strength_guide import ADD_FRACTION, SET_MULTIPLE, suggested_strengths, typical_active_value


def _g(v: float) -> str:
    return f"{v:.4g}"


def site_lines(key: str, s: dict, decoder_norm: float | None) -> list[str]:
    lines = [
        f"{key}: {s['tokens']} tokens",
        f"  values: mean {_g(s['mean'])}, std {_g(s['std'])}, min {_g(s['min'])}, max {_g(s['max'])}, "
        f"negative {s['neg_frac']:.1%}",
        f"  quantiles: p25 {_g(s['p25'])}, p50 {_g(s['p50'])}, p75 {_g(s['p75'])}, p95 {_g(s['p95'])}, "
        f"p99 {_g(s['p99'])}",
        f"  token L2 norm: mean {_g(s['norm_mean'])}, std {_g(s['norm_std'])}, max {_g(s['norm_max'])}",
    ]
    if "fvu" in s:
        fired = sum(1 for f in s["feature_frequency"] if f > 0)
        lines.append(f"  SAE: FVU {_g(s['fvu'])}, mean cosine {_g(s['cosine'])}, {fired} of "
                     f"{len(s['feature_frequency'])} features fired, typical active value "
                     f"{_g(typical_active_value(s['feature_mean']))}")
    ranges = suggested_strengths(s, decoder_norm or 1.0)
    add, set_ = ranges["add"], ranges["set"]
    by_feature = "feature_mean" in s and not math.isnan(typical_active_value(s["feature_mean"]))
    lines.append(f"  suggested strength: add {_g(add[0])} to {_g(add[1])} "
                 f"({ADD_FRACTION[0]:g}-{ADD_FRACTION[1]:g} x token norm"
                 f"{' / decoder norm ' + _g(decoder_norm) if decoder_norm else ''}); "
                 f"set {_g(set_[0])} to {_g(set_[1])}"
                 + (f" ({SET_MULTIPLE[0]:g}-{SET_MULTIPLE[1]:g} x feature mean)" if by_feature
                    else " (as add: no feature statistics)"))
    return lines


def format_report(scale, decoder_norm: float | None = None) -> str:
    """One block of lines per measured site; ``decoder_norm`` (median ‖d_f‖ of the SAE) scales ``add``."""
    settings = scale.settings
    head = (f"Measure Activation Scale: {settings.get('steps')} steps, {settings.get('sampler_name')}/"
            f"{settings.get('scheduler')}, cfg {settings.get('cfg')}, seed {settings.get('seed')}; "
            "image tokens (text-stream sites: text tokens) of both CFG halves at every step")
    lines = [head]
    for key, site in scale.sites.items():
        lines += site_lines(key, site.summary(), decoder_norm if site.sae_stats is not None else None)
    return "\n".join(lines)
