"""The ``features`` / ``mode`` inputs shared by every steering and editing node.

``features`` is ``22420`` or a list with optional per-feature strengths: ``22420:2.0, 17:-1.5``
(commas, semicolons, spaces or new lines separate entries). Features listed without their own
strength take the node's ``strength``. Where the SAE has labels (a ``.labels.json`` beside it), a feature
may be named by its label: ``blue:2.0, red:-1``.
"""
from __future__ import annotations

import math
import re

from ..sae import Edit
from ..sae.labels import feature_by_label

# mode name shown in the UI -> (Edit op, only_active)
MODES: dict[str, tuple[str, bool]] = {
    "add where active": ("add", True),
    "add": ("add", False),
    "set": ("set", False),
    "set where active": ("set", True),
    "scale": ("scale", False),
}
MODE_NAMES = list(MODES)

_ENTRY = re.compile(r"^(\d+|[A-Za-z_][\w\-]*)(?::([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))?$")


def parse_features(text: str, strength: float, d_sae: int | None = None,
                   labels: dict[int, str] | None = None) -> list[tuple[int, float]]:
    """``"22420:2.0, 17"`` -> ``[(22420, 2.0), (17, strength)]``; labels (``"blue:2"``) become their index
    through ``labels``; clear errors for anything else."""
    # "17 : -1.5" -> "17:-1.5", then every comma, semicolon or blank separates entries
    entries = [e for e in re.split(r"[,;\s]+", re.sub(r"\s*:\s*", ":", text or "")) if e]
    if not entries:
        raise ValueError("features is empty: give a feature index such as 22420, or a list like '22420:2.0, 17:-1.5'")
    parsed = []
    for entry in entries:
        match = _ENTRY.match(entry)
        if not match:
            raise ValueError(f"features: cannot read {entry!r}; write an index (22420), index:strength (22420:2.0) or label:strength (blue:2.0), "
                             "separated by commas")
        name = match.group(1)
        feature = int(name) if name.isdigit() else feature_by_label(name, labels or {})
        value = float(match.group(2)) if match.group(2) is not None else float(strength)
        if not math.isfinite(value):
            raise ValueError(f"features: strength for feature {feature} is not finite ({value})")
        if d_sae is not None and not 0 <= feature < d_sae:
            raise ValueError(f"features: index {feature} is out of range for this SAE, which has {d_sae} features "
                             f"(valid: 0..{d_sae - 1})")
        parsed.append((feature, value))
    return parsed


def edits_for(features: list[tuple[int, float]], mode: str) -> list[Edit]:
    """Turn parsed features and a UI mode into kernel edits (one encode serves them all)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODE_NAMES)}")
    op, only_active = MODES[mode]
    return [Edit(feature=f, op=op, value=v, only_active=only_active) for f, v in features]
