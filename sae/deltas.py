"""Turn a list of edits into per-feature changes Δz, given the features' current values.

Kept apart from the autoencoder so that the rules of ``add`` / ``set`` / ``scale`` live in one place:
every fast path of ``steer`` (and the tests' reference) goes through ``feature_deltas``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .edit import Edit


@dataclass(frozen=True)
class EditPlan:
    """Edits grouped for one pass: ``features`` are the distinct edited features, then the gating
    (``where``) features that are not edited, in first-seen order: all of them need z."""

    edits: tuple[Edit, ...]
    features: tuple[int, ...]

    @property
    def needs_encode(self) -> bool:
        """Plain ``add`` on every token is the only edit that does not need to know z."""
        return any(e.op != "add" or e.gate is not None for e in self.edits)


def plan_edits(edits, d_sae: int) -> EditPlan:
    """Check the edits against the SAE's size; group them by feature."""
    edits = tuple(edits)
    for e in edits:
        if not isinstance(e, Edit):
            raise ValueError(f"steer takes a list of sae.Edit, got {type(e).__name__}")
        for name, f in (("feature", e.feature), ("where", e.where)):
            if f is not None and not 0 <= int(f) < d_sae:
                raise ValueError(f"Edit {name} {f} is out of range for this SAE, which has {d_sae} features "
                                 f"(valid: 0..{d_sae - 1})")
    features = tuple(dict.fromkeys([int(e.feature) for e in edits] + [int(e.where) for e in edits if e.where is not None]))
    return EditPlan(edits, features)


def feature_deltas(plan: EditPlan, z: torch.Tensor) -> torch.Tensor:
    """Δz for the plan's features: ``z`` [n, len(features)] holds z_f per token (the encoder's values).

    Edits apply in the order given, each to the value left by the ones before; ``only_active`` and
    ``where`` always refer to the encoder's own membership (z_g > 0), not to what earlier edits did.
    """
    column = {f: i for i, f in enumerate(plan.features)}
    active = z > 0
    edited = z.clone()
    for e in plan.edits:
        i = column[int(e.feature)]
        current = edited[:, i]
        if e.op == "add":
            new = current + e.value
        elif e.op == "set":
            new = torch.full_like(current, e.value)
        else:  # scale
            new = current * e.value
        if e.gate is not None:
            new = torch.where(active[:, column[int(e.gate)]], new, current)
        edited[:, i] = new
    return edited - z
