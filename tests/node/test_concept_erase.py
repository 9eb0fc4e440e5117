"""SAEConceptErase ("SAE Erase Concept") on the tiny FLUX: the erased activations against the rule computed by hand."""
from __future__ import annotations

import pytest
import torch

from comfyui_sae_steering.harness.tiny_flux import sample, tiny_conditioning
from comfyui_sae_steering.nodes.steer.concept_erase_node import SAEConceptErase
from comfyui_sae_steering.nodes.extension import NODES
from flux_capture import Capture, hooks_left
from comfyui_sae_steering.harness.sae_factory import random_sae
from test_feature_contrast import by_hand, set_z
from test_feature_scan import LATENT

STEPS, SEED = 2, 3


def erase(model, sae, **overrides):
    inputs = dict(site="double.img.out", block=0, tokens="image", features="", multiplier=1.0,
                  push_to="−multiplier × feature mean", threshold="neutral mean", threshold_value=0.0, apply_to="both",
                  top_n=3, steps=STEPS, seed=SEED)
    inputs.update(overrides)
    return SAEConceptErase.execute(model=model, sae=sae, **inputs).result


@pytest.fixture(scope="module")
def sae():
    return random_sae(d_in=64, d_sae=128, k=8, seed=5)


def captured(model, patched, positive, negative, steps=2):
    capture = Capture("double.img.out", 0, hidden=64)
    target = patched.clone()
    capture.add_after(target)
    with capture.before_hooks(model.get_model_object("diffusion_model")):
        sample(target, positive, negative, latent=LATENT["samples"], steps=steps, cfg=2.0, seed=11)
    return capture


def expected_after(sae, before, features, threshold, target):
    """The erasure rule by hand: dense codes, then Δz where z > threshold, error kept."""
    z = sae.encode(before)[..., features]
    dz = torch.where(z > threshold, target - z, torch.zeros_like(z))
    return before + dz @ sae.W_dec[features], (dz != 0).any(-1)


def firing(sae, model, positive):
    z = set_z(model, sae, [positive])
    freq = (z > 0).double().mean(0)
    return [int(f) for f in torch.argsort((freq - 0.4).abs())[:2]]


def test_given_features_pushed_to_zero_above_a_value(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    features = firing(sae, tiny_flux, positive)
    model, report = erase(tiny_flux, sae, features=", ".join(map(str, features)), push_to="zero", threshold="value",
                          threshold_value=0.05)
    capture = captured(tiny_flux, model, positive, negative)
    some = False
    for before, after in zip(capture.before, capture.after):
        expected, erased = expected_after(sae, before, features, 0.05, torch.zeros(2))
        torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(after[~erased], before[~erased])  # nothing above the threshold: bit-identical
        some |= bool(erased.any())
    assert some and str(features[0]) in report
    assert not hooks_left(tiny_flux.get_model_object("diffusion_model"))


def test_features_thresholds_and_targets_from_the_sets(tiny_flux, sae):
    concept, neutral = tiny_conditioning(seed=1), tiny_conditioning(seed=2)
    za, zb = set_z(tiny_flux, sae, [concept]), set_z(tiny_flux, sae, [neutral])
    score = by_hand(za, zb, "normalised difference")
    top = [int(f) for f in torch.sort(score, descending=True, stable=True).indices[:3] if score[f] > 0]
    threshold = zb.mean(0)[top].float()
    target = -1.5 * (za.sum(0) / (za > 0).sum(0).clamp_min(1))[top].float()
    model, report = erase(tiny_flux, sae, concept=concept, neutral=neutral, latent=LATENT, multiplier=1.5)
    capture = captured(tiny_flux, model, concept, neutral)
    for before, after in zip(capture.before, capture.after):
        expected, erased = expected_after(sae, before, top, threshold, target)
        torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4)
        assert erased.any() and torch.equal(after[~erased], before[~erased])
    assert report.count("\nstep ") == STEPS  # the preview: one line per step
    for f in top:
        assert f"{f}: above" in report


def test_per_feature_multiplier_and_label(tiny_flux, sae):
    labelled = random_sae(d_in=64, d_sae=128, k=8, seed=5)
    labelled.labels = {7: "sparkle"}
    concept = tiny_conditioning(seed=1)
    _, report = erase(tiny_flux, labelled, features="sparkle:2, 9", concept=concept, threshold="value", latent=LATENT)
    assert "7 (sparkle): above 0 (value)" in report and "(−2 × mean" in report and "(−1 × mean" in report


@pytest.mark.parametrize("overrides,message", [
    (dict(), "^features: empty, so they are found by contrast"),
    (dict(features="3"), "^threshold: 'neutral mean' needs the neutral set"),
    (dict(features="3", threshold="value"), "^push_to: .* needs the feature means"),
    (dict(concept=tiny_conditioning(seed=1)), "^latent: measuring"),
    (dict(features="3", neutral_prompts="a cat"), "^neutral_prompts: 1 prompt.*no clip"),
])
def test_bad_input_names_the_input(tiny_flux, sae, overrides, message):
    with pytest.raises(ValueError, match=message):
        erase(tiny_flux, sae, **overrides)


def test_registered():
    assert SAEConceptErase in NODES
    schema = SAEConceptErase.define_schema()
    assert schema.node_id == "SAEConceptErase" and schema.display_name == "SAE Erase Concept"
