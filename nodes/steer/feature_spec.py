"""The ``features`` / ``mode`` inputs shared by every steering and editing node.

``features`` is ``22420`` or a list with optional per-feature strengths: ``22420:2.0, 17:-1.5``
(commas, semicolons, spaces or new lines separate entries). Features listed without their own
strength take the node's ``strength``. Where the SAE has labels (a ``.labels.json`` beside it), a feature
may be named by its label: ``blue:2.0, red:-1``.

``red>blue:4`` moves a feature into another, whatever the mode: on tokens where the SAE finds ``red``,
``red`` is removed and ``blue`` added with strength 4. Adding ``blue`` everywhere paints it on every
token; ``add where active`` cannot bring in a feature that is absent; this brings it in exactly where
the one it replaces is (Tiny World: red circles turn blue and stay circles).
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from ...sae import Edit
from ...sae.labels import feature_by_label

# mode name shown in the UI -> (Edit op, only_active)
MODES: dict[str, tuple[str, bool]] = {
    "add where active": ("add", True),
    "add": ("add", False),
    "set": ("set", False),
    "set where active": ("set", True),
    "scale": ("scale", False),
}
MODE_NAMES = list(MODES)

_NAME = r"(\d+|[A-Za-z_][\w\-]*)"
_ENTRY = re.compile(rf"^(?:{_NAME}>)?{_NAME}(?::([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))?$")


class Move(NamedTuple):
    """``source>feature:value``: where ``source`` is active, remove it and add ``value`` to ``feature``."""
    feature: int
    value: float
    source: int


def with_value(entry, value: float):
    """The parsed entry with another strength (a plain ``(feature, value)`` or a ``Move``)."""
    return entry._replace(value=value) if isinstance(entry, Move) else (entry[0], value)


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
            raise ValueError(f"features: cannot read {entry!r}; write an index (22420), index:strength (22420:2.0), "
                             "label:strength (blue:2.0) or from>to:strength (red>blue:4), separated by commas")
        source, name, number = match.groups()
        feature = _index(name, d_sae, labels)
        value = float(number) if number is not None else float(strength)
        if not math.isfinite(value):
            raise ValueError(f"features: strength for feature {feature} is not finite ({value})")
        parsed.append(Move(feature, value, _index(source, d_sae, labels)) if source else (feature, value))
    return parsed


def _index(name: str, d_sae: int | None, labels: dict[int, str] | None) -> int:
    feature = int(name) if name.isdigit() else feature_by_label(name, labels or {})
    if d_sae is not None and not 0 <= feature < d_sae:
        raise ValueError(f"features: index {feature} is out of range for this SAE, which has {d_sae} features "
                         f"(valid: 0..{d_sae - 1})")
    return feature


def edits_for(features: list[tuple[int, float]], mode: str) -> list[Edit]:
    """Turn parsed features and a UI mode into kernel edits (one encode serves them all)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODE_NAMES)}")
    op, only_active = MODES[mode]
    edits = []
    for entry in features:
        if isinstance(entry, Move):
            edits += [Edit(entry.source, "set", 0.0, where=entry.source), Edit(entry.feature, "add", entry.value, where=entry.source)]
        else:
            edits.append(Edit(feature=entry[0], op=op, value=entry[1], only_active=only_active))
    return edits
