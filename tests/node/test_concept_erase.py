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


def expected_per_image(sae, before, features, threshold, target):
    """Per image by hand: every token of an image (row) whose mean z over its tokens is above the threshold."""
    z = sae.encode(before)[..., features]
    dz = torch.where(z.mean(-2, keepdim=True) > threshold, target - z, torch.zeros_like(z))
    return before + dz @ sae.W_dec[features], (dz != 0).any(-1)


@pytest.mark.parametrize("scope", ["per token", "per image"])
def test_features_thresholds_and_targets_from_the_sets(tiny_flux, sae, scope):
    concept, neutral = tiny_conditioning(seed=1), tiny_conditioning(seed=2)
    za, zb = set_z(tiny_flux, sae, [concept]), set_z(tiny_flux, sae, [neutral])
    score = by_hand(za, zb, "normalised difference")
    top = [int(f) for f in torch.sort(score, descending=True, stable=True).indices[:3] if score[f] > 0]
    threshold = zb.mean(0)[top].float()
    target = -1.5 * (za.sum(0) / (za > 0).sum(0).clamp_min(1))[top].float()
    model, report = erase(tiny_flux, sae, concept=concept, neutral=neutral, latent=LATENT, multiplier=1.5, scope=scope)
    capture = captured(tiny_flux, model, concept, neutral)
    rules = {"per token": expected_after, "per image": expected_per_image}
    scopes_differ = False  # so matching one scope's rule is not matching the other's
    for before, after in zip(capture.before, capture.after):
        expected, erased = rules[scope](sae, before, top, threshold, target)
        torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4)
        assert erased.any() and torch.equal(after[~erased], before[~erased])
        other, _ = rules["per image" if scope == "per token" else "per token"](sae, before, top, threshold, target)
        scopes_differ |= not torch.allclose(other, expected, rtol=1e-4, atol=1e-4)
    assert scopes_differ
    assert report.count("\nstep ") == STEPS  # the preview: one line per step
    assert f"both, {scope}:" in report
    for f in top:
        assert f"{f}: above" in report


def test_per_image_leaves_images_below_the_threshold_bit_identical(tiny_flux, sae):
    """A threshold between the images' means: the images below it come back bit for bit, all their tokens."""
    positive, negative = tiny_conditioning(seed=1), tiny_conditioning(seed=2)
    feature = firing(sae, tiny_flux, positive)[0]
    probe = captured(tiny_flux, tiny_flux.clone(), positive, negative, steps=1)
    means = sae.encode(probe.before[0])[..., feature].mean(-1)  # [rows]: each image's mean at the first step
    assert means.max() > means.min(), "the probe needs images with different means"
    value = float((means.max() + means.min()) / 2)
    model, _ = erase(tiny_flux, sae, features=str(feature), push_to="zero", threshold="value", threshold_value=value,
                     scope="per image")
    capture = captured(tiny_flux, model, positive, negative, steps=1)
    before, after = capture.before[0], capture.after[0]
    above = means > value
    assert above.any() and (~above).any()
    assert torch.equal(after[~above], before[~above])
    expected, _ = expected_per_image(sae, before, [feature], torch.tensor([value]), torch.zeros(1))
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)


def test_per_feature_multiplier_and_label(tiny_flux, sae):
    labelled = random_sae(d_in=64, d_sae=128, k=8, seed=5)
    labelled.labels = {7: "sparkle"}
    concept = tiny_conditioning(seed=1)
    _, report = erase(tiny_flux, labelled, features="sparkle:2, 9", concept=concept, threshold="value", latent=LATENT)
    assert "7 (sparkle): above 0 (value)" in report and "(−2 × mean" in report and "(−1 × mean" in report


def test_step_window(tiny_flux, tiny_cond, sae):
    """start/end_percent: forwards outside the window come back bit for bit, those inside follow the rule."""
    positive, negative = tiny_cond
    features = firing(sae, tiny_flux, positive)
    sampling = tiny_flux.get_model_object("model_sampling")
    start, end = 0.3, 0.7
    hi, lo = sampling.percent_to_sigma(start), sampling.percent_to_sigma(end)
    model, report = erase(tiny_flux, sae, features=", ".join(map(str, features)), push_to="zero", threshold="value",
                          threshold_value=0.05, start_percent=start, end_percent=end)
    capture = captured(tiny_flux, model, positive, negative, steps=8)
    inside = [lo <= sigma <= hi for _, sigma, _ in capture.forwards]
    assert any(inside) and not all(inside)
    for flag, before, after in zip(inside, capture.before, capture.after):
        expected = expected_after(sae, before, features, 0.05, torch.zeros(2))[0] if flag else before
        torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
        assert flag or torch.equal(after, before)
    assert "both, per token, 0.3-0.7 of the sampling:" in report


@pytest.mark.parametrize("overrides,message", [
    (dict(), "^features: empty, so they are found by contrast"),
    (dict(features="3"), "^threshold: 'neutral mean' needs the neutral set"),
    (dict(features="3", threshold="value"), "^push_to: .* needs the feature means"),
    (dict(concept=tiny_conditioning(seed=1)), "^latent: measuring"),
    (dict(features="3", neutral_prompts="a cat"), "^neutral_prompts: 1 prompt.*no clip"),
    (dict(features="3", threshold="value", push_to="zero", scope="per pixel"), "^scope 'per pixel' is not one of"),
    (dict(features="3", threshold="value", push_to="zero", start_percent=0.8, end_percent=0.2), "^start_percent"),
])
def test_bad_input_names_the_input(tiny_flux, sae, overrides, message):
    with pytest.raises(ValueError, match=message):
        erase(tiny_flux, sae, **overrides)


def test_registered():
    assert SAEConceptErase in NODES
    schema = SAEConceptErase.define_schema()
    assert schema.node_id == "SAEConceptErase" and schema.display_name == "SAE Erase Concept"


def test_new_inputs_are_optional_and_come_last():
    """Saved workflows keep working: the inputs of the first version keep their names and order, the later ones
    (scope, the step window) are optional and default to what the first version did."""
    inputs = SAEConceptErase.define_schema().inputs
    first = ["model", "sae", "site", "block", "tokens", "features", "multiplier", "push_to", "threshold",
             "threshold_value", "apply_to", "top_n", "latent", "concept", "neutral", "clip", "concept_prompts",
             "neutral_prompts", "steps", "seed", "scale"]
    assert [i.id for i in inputs] == first + ["scope", "start_percent", "end_percent"]
    later = {i.id: i for i in inputs[len(first):]}
    assert all(i.optional for i in later.values())
    assert later["scope"].default == "per token" and later["start_percent"].default == 0.0
    assert later["end_percent"].default == 1.0
