"""A strength schedule over sampling percent: keyframes ``0:1.0, 0.4:1.0, 0.6:0.2, 1:0``, linearly interpolated.

Percent runs from 0 (the first, noisiest step) to 1 (the end of sampling), as ComfyUI's
``start_percent``/``end_percent`` do. Before the first keyframe the first value holds, after the last the
last. A sampler knows sigmas, not percents: ``percent_at_sigma`` inverts a model's ``percent_to_sigma``
(any monotone map, e.g. FLUX's shifted one) so the schedule is read against the sigma actually sampled.
"""
from __future__ import annotations

import math
import re
from typing import Callable

Keyframes = tuple[tuple[float, float], ...]
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KEYFRAME = re.compile(rf"^({_NUMBER}):({_NUMBER})$")
BISECTIONS = 60  # percent to ~1e-18: far below one sampling step


def parse_schedule(text: str) -> Keyframes:
    """``"0:1, 0.5:0.2"`` -> ((0.0, 1.0), (0.5, 0.2)); empty -> () (no schedule). Percents in [0, 1], strictly
    increasing; a one-line error naming ``schedule`` for anything else."""
    entries = [e for e in re.split(r"[,;\s]+", re.sub(r"\s*:\s*", ":", text or "")) if e]
    keyframes = []
    for entry in entries:
        match = _KEYFRAME.match(entry)
        if not match:
            raise ValueError(f"schedule: cannot read {entry!r}; write percent:strength keyframes such as "
                             "'0:1.0, 0.4:1.0, 0.6:0.2, 1:0'")
        percent, value = float(match.group(1)), float(match.group(2))
        if not 0.0 <= percent <= 1.0:
            raise ValueError(f"schedule: percent {percent:g} in {entry!r} is outside 0..1")
        if not math.isfinite(value):
            raise ValueError(f"schedule: strength in {entry!r} is not finite")
        if keyframes and percent <= keyframes[-1][0]:
            raise ValueError(f"schedule: percents must increase, but {percent:g} follows {keyframes[-1][0]:g}")
        keyframes.append((percent, value))
    return tuple(keyframes)


def schedule_value(keyframes: Keyframes, percent: float) -> float:
    """The schedule's factor at ``percent``: linear between keyframes, held flat outside them; 1 without keyframes."""
    if not keyframes:
        return 1.0
    if percent <= keyframes[0][0]:
        return keyframes[0][1]
    for (p0, v0), (p1, v1) in zip(keyframes, keyframes[1:]):
        if percent <= p1:
            return v0 + (v1 - v0) * (percent - p0) / (p1 - p0)
    return keyframes[-1][1]


def percent_at_sigma(sigma: float, percent_to_sigma: Callable[[float], float]) -> float:
    """The sampling percent whose sigma is ``sigma``: the largest p in [0, 1] with percent_to_sigma(p) >= sigma
    (``percent_to_sigma`` decreases with p), found by bisection."""
    lo, hi = 0.0, 1.0
    if float(percent_to_sigma(lo)) < sigma:
        return 0.0
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        if float(percent_to_sigma(mid)) >= sigma:
            lo = mid
        else:
            hi = mid
    return lo
