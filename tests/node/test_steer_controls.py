"""SAEFluxSteer's regional mask, strength schedule and CFG-aware sign, on the tiny FLUX through real sampling.

Each control is checked per forward against an independent reference: the activations captured before
the edit (tests/flux_capture.py), the kernel's ``sae.steer`` on them, and the weight the control should
give, computed here by hand (block means of the mask, numpy's interpolation at the percent found by
inverting FLUX's time shift in closed form, the sign of the CFG half).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comfyui_sae_steering.harness.tiny_flux import empty_latent, sample
from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
from comfyui_sae_steering.nodes.steer.steer_request import CFG_SIGNED
from comfyui_sae_steering.sae.schedule import parse_schedule, percent_at_sigma, schedule_value
from flux_capture import Capture
from comfyui_sae_steering.harness.sae_factory import random_sae

LATENT = empty_latent(64, 64)  # 8x8 latent -> a 4x4 grid of 16 image tokens
GRID = (4, 4)
FEATURES = "0:3.0, 1:-2.0"


def steer(model, sae, **overrides):
    inputs = dict(site="double.img.out", block=0, tokens="image", features=FEATURES, strength=1.0, mode="add",
                  keep_error=True, start_percent=0.0, end_percent=1.0, apply_to="both")
    inputs.update(overrides)
    return SAEFluxSteer.execute(model=model, sae=sae, **inputs).result[0]


@pytest.fixture(scope="module")
def sae():
    return random_sae(d_in=64, d_sae=256, k=8, seed=3)


def captured(model, patched, positive, negative, site="double.img.out", steps=1, cfg=2.0, latent=LATENT):
    capture = Capture(site, 0, hidden=64)
    target = patched.clone()
    capture.add_after(target)
    with capture.before_hooks(model.get_model_object("diffusion_model")):
        out = sample(target, positive, negative, latent=latent, steps=steps, cfg=cfg, seed=11)
    return capture, out


def kernel_edit(sae, x, mode="add"):
    """The full edit of the kernel on ``x`` (what the node gives without controls) minus ``x``."""
    return sae.steer(x, edits_for(parse_features(FEATURES, 1.0), mode)) - x


# ---- regional mask ---------------------------------------------------------------------------------------------


def test_left_half_mask_steers_only_the_left_tokens(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0
    capture, _ = captured(tiny_flux, steer(tiny_flux, sae, mask=mask), positive, negative, steps=2)
    left = (torch.arange(16) % 4) < 2
    for before, after in zip(capture.before, capture.after):
        full = before + kernel_edit(sae, before)
        assert torch.equal(after[:, ~left], before[:, ~left])  # outside: bit-identical
        torch.testing.assert_close(after[:, left], full[:, left], rtol=1e-5, atol=1e-5)
        assert not torch.equal(after[:, left], before[:, left])


def test_soft_mask_of_another_size_weights_the_edit(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    mask = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(4))
    mask[:, :4, :2] = 0.0  # token (0, 0) and (1, 0): nothing
    weights = mask.reshape(4, 2, 4, 2).mean((1, 3)).flatten()  # 2x2 mask pixels per token, by hand
    capture, _ = captured(tiny_flux, steer(tiny_flux, sae, mask=mask), positive, negative)
    before, after = capture.before[0], capture.after[0]
    expected = before + weights[None, :, None] * kernel_edit(sae, before)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    outside = weights == 0
    assert outside.sum() == 2 and torch.equal(after[:, outside], before[:, outside])


def test_a_mask_per_latent(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    masks = torch.zeros(2, 4, 4)
    masks[0, 0, 0] = 1.0
    masks[1, 3, 3] = 0.5
    latent = empty_latent(64, 64, batch=2)
    capture, _ = captured(tiny_flux, steer(tiny_flux, sae, mask=masks), positive, negative, latent=latent)
    (cond_or_uncond, _, _), before, after = capture.forwards[0], capture.before[0], capture.after[0]
    assert before.shape[0] == 2 * len(cond_or_uncond)
    weights = masks.flatten(1).repeat(len(cond_or_uncond), 1)  # rows: chunk by chunk, latent 0 then 1
    expected = before + weights[..., None] * kernel_edit(sae, before)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(after[weights == 0], before[weights == 0])


def test_empty_mask_gives_the_plain_image(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    plain = sample(tiny_flux, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5)
    masked = steer(tiny_flux, sae, mask=torch.zeros(1, 64, 64), mode="add where active")
    assert torch.equal(sample(masked, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5), plain)


def test_mask_leaves_kontext_reference_tokens_to_tokens_choice(tiny_flux, tiny_cond, sae):
    """Reference tokens are not on the mask's grid: with tokens=all they are steered as without a mask."""
    positive, _ = tiny_cond
    reference = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(9))  # 4 reference tokens
    with_ref = [[positive[0][0], {**positive[0][1], "reference_latents": [reference]}]]
    mask = torch.zeros(1, 64, 64)
    mask[:, :32] = 1.0  # top half: image tokens 0..7
    capture, _ = captured(tiny_flux, steer(tiny_flux, sae, tokens="all", mask=mask), with_ref, with_ref)
    before, after = capture.before[0], capture.after[0]
    assert before.shape[1] == 20
    full = before + kernel_edit(sae, before)
    inside = torch.zeros(20, dtype=torch.bool)
    inside[:8] = True
    inside[16:] = True
    torch.testing.assert_close(after[:, inside], full[:, inside], rtol=1e-5, atol=1e-5)
    assert torch.equal(after[:, ~inside], before[:, ~inside])


def test_mask_batch_that_does_not_match_is_refused(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    patched = steer(tiny_flux, sae, mask=torch.ones(3, 64, 64))
    with pytest.raises(ValueError, match=r"^mask: a batch of 3 masks does not match the latent batch of 2"):
        sample(patched, positive, negative, latent=empty_latent(64, 64, batch=2), steps=1, cfg=2.0)


def test_mask_of_a_bad_shape_is_refused(tiny_flux, sae):
    with pytest.raises(ValueError, match="^mask must be"):
        steer(tiny_flux, sae, mask=torch.ones(1, 1, 64, 64))


# ---- strength schedule -----------------------------------------------------------------------------------------

SCHEDULE = "0:1.0, 0.4:1.0, 0.6:0.2, 1:0"


def percent_by_hand(sigma: float, shift: float) -> float:
    """Inverse of FLUX's time shift sigma = e^mu / (e^mu + 1/t - 1) at t = 1 - percent, in closed form."""
    t = 1.0 / (1.0 + math.exp(shift) * (1.0 / sigma - 1.0))
    return 1.0 - t


@pytest.mark.parametrize("shifted", [False, True])
def test_schedule_value_at_each_step(tiny_flux, tiny_cond, sae, shifted):
    from comfy_extras.nodes_model_advanced import ModelSamplingFlux

    positive, negative = tiny_cond
    patched = steer(tiny_flux, sae, schedule=SCHEDULE)
    if shifted:  # applied after the steer node: the schedule must read the sampling that runs
        patched = ModelSamplingFlux().patch(patched, max_shift=3.0, base_shift=0.5, width=2048, height=2048)[0]
    shift = patched.get_model_object("model_sampling").shift
    capture, _ = captured(tiny_flux, patched, positive, negative, steps=8)
    keys = np.array([0.0, 0.4, 0.6, 1.0]), np.array([1.0, 1.0, 0.2, 0.0])
    factors = []
    for (_, sigma, _), before, after in zip(capture.forwards, capture.before, capture.after):
        factor = float(np.interp(percent_by_hand(sigma, shift), *keys))
        factors.append(factor)
        expected = before + factor * kernel_edit(sae, before)
        torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    assert len(set(round(f, 6) for f in factors)) >= 5  # the steps really see different values


def test_schedule_at_zero_is_bit_identical(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    plain = sample(tiny_flux, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5)
    patched = steer(tiny_flux, sae, schedule="0:0, 1:0")
    assert torch.equal(sample(patched, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5), plain)


def test_schedule_helpers():
    keys = parse_schedule(" 0 : 1.0; 0.5:0.2\n1:-1 ")
    assert keys == ((0.0, 1.0), (0.5, 0.2), (1.0, -1.0))
    assert schedule_value(keys, 0.25) == pytest.approx(0.6)
    assert schedule_value(((0.2, 2.0), (0.8, 4.0)), 0.0) == 2.0 and schedule_value(((0.2, 2.0), (0.8, 4.0)), 0.9) == 4.0
    assert schedule_value((), 0.3) == 1.0
    assert percent_at_sigma(0.3, lambda p: 1.0 - p) == pytest.approx(0.7, abs=1e-12)


@pytest.mark.parametrize("text,message", [
    ("0:1, abc", "schedule: cannot read 'abc'"),
    ("0:1, 0.5", "schedule: cannot read '0.5'"),
    ("0.5:1, 0.2:0", "schedule: percents must increase, but 0.2 follows 0.5"),
    ("0.5:1, 0.5:0", "schedule: percents must increase"),
    ("1.5:1", "schedule: percent 1.5"),
])
def test_bad_schedule_is_refused(tiny_flux, sae, text, message):
    with pytest.raises(ValueError, match="^" + message):
        steer(tiny_flux, sae, schedule=text)


# ---- CFG-aware ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["add", "add where active"])
def test_negative_pass_gets_minus_the_edit(tiny_flux, tiny_cond, sae, mode):
    positive, negative = tiny_cond
    patched = steer(tiny_flux, sae, apply_to=CFG_SIGNED, mode=mode)
    capture, _ = captured(tiny_flux, patched, positive, negative, steps=2)
    for (cond_or_uncond, _, _), before, after in zip(capture.forwards, capture.before, capture.after):
        halves = torch.tensor(cond_or_uncond).repeat_interleave(before.shape[0] // len(cond_or_uncond))
        assert sorted(set(halves.tolist())) == [0, 1]
        sign = torch.where(halves == 1, -1.0, 1.0)[:, None, None]
        edit = kernel_edit(sae, before, mode)
        torch.testing.assert_close(after, before + sign * edit, rtol=1e-5, atol=1e-5)
        if mode == "add":  # the same vector everywhere: the negative pass moves by exactly minus the positive's move
            moved = after - before
            torch.testing.assert_close(moved[halves == 1], -moved[halves == 0], rtol=0, atol=1e-5)
            assert moved.abs().max() > 0.1


def test_signed_at_cfg_one_steers_the_positive_pass_as_both(tiny_flux, tiny_cond, sae):
    positive, _ = tiny_cond
    both = sample(steer(tiny_flux, sae), positive, latent=LATENT, steps=3, cfg=1.0, seed=4)
    signed = sample(steer(tiny_flux, sae, apply_to=CFG_SIGNED), positive, latent=LATENT, steps=3, cfg=1.0, seed=4)
    assert torch.equal(signed, both)


def test_controls_together(tiny_flux, tiny_cond, sae):
    """Mask × schedule × sign multiply into one weight per token."""
    positive, negative = tiny_cond
    mask = torch.zeros(1, 4, 4)
    mask[0, 1:3, 1:3] = 0.5
    patched = steer(tiny_flux, sae, mask=mask, schedule="0:2, 1:0", apply_to=CFG_SIGNED)
    shift = patched.get_model_object("model_sampling").shift
    capture, _ = captured(tiny_flux, patched, positive, negative, steps=3)
    for (cond_or_uncond, sigma, _), before, after in zip(capture.forwards, capture.before, capture.after):
        halves = torch.tensor(cond_or_uncond).repeat_interleave(before.shape[0] // len(cond_or_uncond))
        sign = torch.where(halves == 1, -1.0, 1.0)[:, None]
        weight = sign * mask.flatten()[None] * 2.0 * (1.0 - percent_by_hand(sigma, shift))
        torch.testing.assert_close(after, before + weight[..., None] * kernel_edit(sae, before), rtol=1e-5, atol=1e-5)
        assert torch.equal(after[:, mask.flatten() == 0], before[:, mask.flatten() == 0])


def test_new_inputs_are_optional_and_come_last():
    """Saved workflows keep working: the old inputs keep their names and order, the new ones are optional."""
    inputs = SAEFluxSteer.define_schema().inputs
    assert [i.id for i in inputs] == ["model", "sae", "site", "block", "tokens", "features", "strength", "mode",
                                      "keep_error", "start_percent", "end_percent", "apply_to", "scale",
                                      "strength_unit", "mask", "schedule"]
    assert all(i.optional for i in inputs[-2:])
    apply_to = next(i for i in inputs if i.id == "apply_to")
    assert apply_to.options == ["positive", "negative", "both", CFG_SIGNED] and apply_to.default == "both"


def test_example_workflow_runs_in_the_real_server(comfy_server, object_info):
    """The drag-and-drop workflow of these controls, converted as the frontend queues it, through POST /prompt."""
    import json

    from comfyui_sae_steering.harness.comfyui_locator import PACK_ROOT
    from comfyui_sae_steering.harness.workflow_api import to_api

    ui = json.loads((PACK_ROOT / "example_workflows" / "tiny_world_find_mask_erase.json").read_text())
    entry = comfy_server.run_prompt(to_api(ui, object_info))
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = [image["filename"].split("_00")[0] for output in entry["outputs"].values()
             for image in output.get("images", []) if image.get("type") == "output"]
    assert sorted(saved) == ["left_half_blue"] * 4 + ["red_erased"] * 4
