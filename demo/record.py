"""Record a FLUX site's activations during real sampling runs: the demo SAE's training data.

Uses the pack's own site tap (``nodes/sites/tap.py``, the one hook mechanism that steers and
measures), attached to a clone of the model with a callback that copies what it sees.
"""
from __future__ import annotations

import torch

from .headless import import_from_harness

tiny_flux = import_from_harness("tiny_flux")


def record_site(site_tap, model, site: str, block: int, conditionings, width: int, height: int, steps: int,
                seed: int = 0) -> list[torch.Tensor]:
    """Sample once per conditioning (cfg 1, euler, noise seed ``seed + i``); returns, per sampling, the
    activations the tap hands over at (site, block) at every step, as [tokens, hidden] fp32.
    ``site_tap`` is the pack's ``nodes.sites.tap`` module; ``model`` itself stays unpatched."""
    captured: list[torch.Tensor] = []

    def copy(activations, event):
        captured.append(activations.detach().to(torch.float32).reshape(-1, activations.shape[-1]).clone())
        return None  # activations flow on unchanged

    recording, _ = site_tap.attach_tap(model, site_tap.TapSpec(site, block), copy)
    per_sampling = []
    for i, conditioning in enumerate(conditionings):
        captured.clear()
        tiny_flux.sample(recording, conditioning, latent=tiny_flux.empty_latent(width, height), steps=steps, cfg=1.0, seed=seed + i)
        per_sampling.append(torch.cat(captured))
    return per_sampling
