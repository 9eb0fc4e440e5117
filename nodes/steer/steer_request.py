"""What SAE Steer FLUX and SAE Steer share once the site is known: the inputs turned into a steering callback.

The string inputs (features, mode, schedule, apply_to, strength_unit) become their objects here, once; the
node then only chooses the tap (FLUX block or UNet transformer) that carries the callback.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ...sae.labels import describe
from ...sae.schedule import parse_schedule
from ..sites.any_site import describe_site
from ..sites.choice import in_units
from ..sites.flux_sites import APPLY_TO_CHOICES
from .feature_spec import Move, edits_for, parse_features
from .steer_callback import SteerCallback

log = logging.getLogger(__name__)
CFG_SIGNED = "positive +, negative −"  # add on the positive pass, subtract the same edit on the negative one
STEER_APPLY_TO = APPLY_TO_CHOICES + [CFG_SIGNED]


@dataclass(frozen=True)
class SteerRequest:
    callback: SteerCallback
    apply_to: str          # the CFG half the tap selects ("both" when the callback signs the halves itself)
    track_percent: bool    # the callback reads each step's sampling percent (a schedule)


def steer_request(sae, site: str, block: int, features: str, strength: float, mode: str, keep_error: bool,
                  apply_to: str, scale, strength_unit: str, mask, schedule: str) -> SteerRequest:
    keyframes = parse_schedule(schedule)
    if apply_to not in STEER_APPLY_TO:
        raise ValueError(f"apply_to {apply_to!r} is not one of {', '.join(STEER_APPLY_TO)}")
    parsed = parse_features(features, strength, sae.d_sae, labels=sae.labels)
    absolute = in_units(parsed, strength_unit, scale, site, block, sae, mode)
    log.info("SAE Steer at %s, %s: %s", describe_site(site, block), mode,
             ", ".join(f"{describe(e[0], sae.labels)} {e[1]:+.4g}"
                       + (f" where {describe(e.source, sae.labels)} was" if isinstance(e, Move) else "") for e in absolute))
    signed = apply_to == CFG_SIGNED
    callback = SteerCallback(sae, edits_for(absolute, mode), keep_error, mask=mask, schedule=keyframes, signed=signed)
    return SteerRequest(callback, "both" if signed else apply_to, bool(keyframes))
