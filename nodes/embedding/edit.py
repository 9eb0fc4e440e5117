"""Edit one embedding tensor through an SAE, Gytis Daujotas's way, and say what changed.

``decode(z') + (x - decode(z))`` with ``keep_error``: only the chosen features move. The SAE
maths is the kernel's ``steer``; this module adds the ComfyUI-side care: width check, the SAE's
device, a new tensor out, and the before/after report.
"""
from __future__ import annotations

import torch

from ...sae import Edit
from ...sae.deltas import feature_deltas, plan_edits
from ..steer.feature_spec import edits_for, parse_features
from .targets import check_width


def edit_embeddings(sae, parts: list[tuple[str, str, torch.Tensor]], features: str, strength: float, mode: str,
                    keep_error: bool, title: str) -> tuple[list[torch.Tensor], str]:
    """What both edit nodes do: parse their inputs, edit each ``(label, name, tensor)`` part, report.

    ``label`` prefixes the part's report lines (``"entry 0"`` or ``""``); ``name`` says in errors
    which field it is. Returns the edited tensors, in order, and the report text.
    """
    edits = edits_for(parse_features(features, strength, d_sae=sae.d_sae, labels=sae.labels), mode)
    edited, lines = [], [f"{title}, mode {mode}, keep_error {'on' if keep_error else 'off'}"]
    for label, name, tensor in parts:
        new, part_lines = edit_embedding(sae, tensor, edits, keep_error, name)
        edited.append(new)
        lines += [f"{label}, {line}" if label else line for line in part_lines]
    return edited, "\n".join(lines)


def edit_embedding(sae, x: torch.Tensor, edits: list[Edit], keep_error: bool,
                   what: str) -> tuple[torch.Tensor, list[str]]:
    """``x`` (``[..., d_in]``, any float dtype) edited by ``edits``: a new tensor of x's dtype and device.

    Also returns report lines, one per batch item and edit: the feature's value before and after
    (the mean over tokens for token tensors) and whether the SAE found it active.
    """
    check_width(x, sae.d_in, what)
    work = x.detach().to(sae.device)  # the kernel does its maths in fp32 and casts back to x's dtype
    out = sae.steer(work, edits, keep_error=keep_error).to(x.device)  # steer always returns a new tensor
    return out, _report_lines(sae, work, edits)


def _items(work: torch.Tensor) -> torch.Tensor:
    """``[items, tokens, d_in]``: a pooled ``[B, D]`` is B items of one token, ``[B, N, D]`` B items of N."""
    if work.ndim == 1:
        return work.reshape(1, 1, -1)
    if work.ndim == 2:
        return work.unsqueeze(1)
    return work.reshape(work.shape[0], -1, work.shape[-1])


def _report_lines(sae, work: torch.Tensor, edits: list[Edit]) -> list[str]:
    items = _items(work)
    n_items, n_tokens = items.shape[0], items.shape[1]
    plan = plan_edits(edits, sae.d_sae)
    before = sae.feature_values(items.reshape(-1, items.shape[-1]), plan.features)
    after = before + feature_deltas(plan, before)  # the kernel's own edit rules
    before, after = before.reshape(n_items, n_tokens, -1), after.reshape(n_items, n_tokens, -1)
    lines = []
    for item in range(n_items):
        for i, f in enumerate(plan.features):
            old, new = before[item, :, i], after[item, :, i]
            active = int((old > 0).sum())
            if n_tokens == 1:
                state = "active" if active else "inactive"
                lines.append(f"item {item}: feature {f}: {float(old[0]):.4g} -> {float(new[0]):.4g} ({state})")
            else:
                lines.append(f"item {item}: feature {f}: mean {float(old.mean()):.4g} -> {float(new.mean()):.4g} "
                             f"over {n_tokens} tokens, active on {active}/{n_tokens}")
    return lines
