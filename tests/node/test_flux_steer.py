"""SAEFluxSteer on the tiny FLUX through real comfy.sample.sample."""
from __future__ import annotations

import pytest
import torch

from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux, empty_latent, sample
from comfyui_sae_steering.nodes.sites.flux_sites import SITES, site_from_hook
from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
from flux_capture import Capture, hooks_left, popular_features
from comfyui_sae_steering.harness.sae_factory import random_sae

LATENT = empty_latent(64, 64)  # 8x8 latent -> 16 image tokens; tiny_cond has 8 text tokens
DEAD = 5


def steer(model, sae, **overrides):
    inputs = dict(site="double.img.out", block=0, tokens="image", features="3", strength=1.0,
                  mode="add where active", keep_error=True, start_percent=0.0, end_percent=1.0, apply_to="both")
    inputs.update(overrides)
    return SAEFluxSteer.execute(model=model, sae=sae, **inputs).result[0]


@pytest.fixture(scope="module")
def sae():
    return random_sae(d_in=64, d_sae=256, k=8, seed=3, dead=(DEAD,))


def run_captured(model, site, block, positive, negative, steps=1, cfg=2.0, patched=None):
    capture = Capture(site, block, hidden=64)
    target = (patched or model).clone()
    capture.add_after(target)
    with capture.before_hooks(model.get_model_object("diffusion_model")):
        out = sample(target, positive, negative, latent=LATENT, steps=steps, cfg=cfg, seed=11)
    return capture, out


def selection(site, tokens, txt_len, img_tokens, length):
    stream = SITES[site].stream
    if stream == "txt":
        return slice(0, length)
    if stream == "img":
        return slice(0, length) if tokens == "all" else slice(0, img_tokens)
    return {"text": slice(0, txt_len), "image": slice(txt_len, txt_len + img_tokens), "all": slice(0, length)}[tokens]


SITE_CASES = [("double.img.out", 0), ("double.txt.out", 1), ("double.img.attn", 1), ("double.txt.attn", 0),
              ("double.img.mlp", 0), ("double.txt.mlp", 1), ("single.out", 0), ("single.attn", 1)]


@pytest.mark.parametrize("site,block", SITE_CASES)
@pytest.mark.parametrize("mode", ["add", "add where active", "set", "scale"])
@pytest.mark.parametrize("keep_error", [True, False])
def test_patched_activation_equals_kernel_steer(tiny_flux, tiny_cond, sae, site, block, mode, keep_error):
    positive, negative = tiny_cond
    reference, _ = run_captured(tiny_flux, site, block, positive, negative)
    features = popular_features(sae, reference.before[0])
    assert features, "the test SAE must have features that fire on some tokens"
    spec = ", ".join(f"{f}:{v}" for f, v in zip(features, (2.0, -1.5, 0.5)))
    tokens = "image" if SITES[site].block_type == "single" else "all"
    patched = steer(tiny_flux, sae, site=site, block=block, features=spec, strength=1.0, mode=mode,
                    keep_error=keep_error, tokens=tokens)
    capture, _ = run_captured(tiny_flux, site, block, positive, negative, patched=patched)
    # the first forward sees the same inputs as the unpatched run
    assert torch.equal(capture.before[0], reference.before[0])
    before, after = capture.before[0], capture.after[0]
    txt_len = capture.forwards[0][2]
    sel = selection(site, tokens, txt_len, 16, before.shape[1])
    edits = edits_for(parse_features(spec, 1.0), mode)
    expected = before.clone()
    expected[:, sel] = sae.steer(before[:, sel], edits, keep_error=keep_error)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(after, before)  # the edit did something
    untouched = torch.ones(before.shape[1], dtype=torch.bool)
    untouched[sel] = False
    assert torch.equal(after[:, untouched], before[:, untouched])


@pytest.mark.parametrize("tokens", ["image", "text", "all"])
def test_single_block_token_choice(tiny_flux, tiny_cond, sae, tokens):
    positive, negative = tiny_cond
    patched = steer(tiny_flux, sae, site="single.out", block=0, features="0:3.0", mode="add", tokens=tokens)
    capture, _ = run_captured(tiny_flux, "single.out", 0, positive, negative, patched=patched)
    before, after = capture.before[0], capture.after[0]
    txt_len = capture.forwards[0][2]
    changed = (after != before).any(-1).any(0)
    expected = torch.zeros(before.shape[1], dtype=torch.bool)
    expected[selection("single.out", tokens, txt_len, 16, before.shape[1])] = True
    assert torch.equal(changed, expected)


def test_other_stream_untouched(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    patched = steer(tiny_flux, sae, site="double.img.out", block=0, features="0:3.0", mode="add")
    img, _ = run_captured(tiny_flux, "double.img.out", 0, positive, negative, patched=patched)
    txt, _ = run_captured(tiny_flux, "double.txt.out", 0, positive, negative, patched=patched)
    assert not torch.equal(img.after[0], img.before[0])
    assert torch.equal(txt.after[0], txt.before[0])


@pytest.mark.parametrize("apply_to", ["positive", "negative"])
def test_apply_to_steers_only_that_half(tiny_flux, tiny_cond, sae, apply_to):
    positive, negative = tiny_cond
    patched = steer(tiny_flux, sae, features="0:3.0", mode="add", apply_to=apply_to)
    capture, _ = run_captured(tiny_flux, "double.img.out", 0, positive, negative, patched=patched, steps=2)
    wanted = 0 if apply_to == "positive" else 1
    for (cond_or_uncond, _, _), before, after in zip(capture.forwards, capture.before, capture.after):
        rows = torch.tensor(cond_or_uncond).repeat_interleave(before.shape[0] // len(cond_or_uncond))
        changed = (after != before).flatten(1).any(1)
        assert torch.equal(changed, rows == wanted)


def test_negative_only_at_cfg_one_is_a_no_op(tiny_flux, tiny_cond, sae):
    positive, _ = tiny_cond
    plain = sample(tiny_flux, positive, latent=LATENT, steps=3, cfg=1.0, seed=4)
    patched = steer(tiny_flux, sae, features="0:3.0", mode="add", apply_to="negative")
    assert torch.equal(sample(patched, positive, latent=LATENT, steps=3, cfg=1.0, seed=4), plain)


def test_step_window(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    sampling = tiny_flux.get_model_object("model_sampling")
    start, end = 0.3, 0.7
    sigma_start, sigma_end = sampling.percent_to_sigma(start), sampling.percent_to_sigma(end)
    patched = steer(tiny_flux, sae, features="0:3.0", mode="add", start_percent=start, end_percent=end)
    capture, _ = run_captured(tiny_flux, "double.img.out", 0, positive, negative, patched=patched, steps=8)
    inside = [sigma_end <= s <= sigma_start for _, s, _ in capture.forwards]
    assert any(inside) and not all(inside)
    for flag, before, after in zip(inside, capture.before, capture.after):
        assert torch.equal(after, before) != flag


def test_step_window_follows_a_model_sampling_shift_applied_later(tiny_flux, tiny_cond, sae):
    """The window is read from the model_sampling the model samples with, not the one at node time."""
    from comfy_extras.nodes_model_advanced import ModelSamplingFlux

    positive, negative = tiny_cond
    start, end = 0.2, 0.6
    patched = steer(tiny_flux, sae, features="0:3.0", mode="add", start_percent=start, end_percent=end)
    shifted = ModelSamplingFlux().patch(patched, max_shift=3.0, base_shift=0.5, width=2048, height=2048)[0]
    capture, _ = run_captured(tiny_flux, "double.img.out", 0, positive, negative, patched=shifted, steps=10)

    def inside(model):
        sampling = model.get_model_object("model_sampling")
        hi, lo = sampling.percent_to_sigma(start), sampling.percent_to_sigma(end)
        return [lo <= s <= hi for _, s, _ in capture.forwards]

    expected = inside(shifted)
    assert any(expected) and expected != inside(tiny_flux)  # the shift moves the window: the test can tell
    for flag, before, after in zip(expected, capture.before, capture.after):
        assert torch.equal(after, before) != flag


def test_strength_zero_and_dead_feature_are_bit_identical(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    plain = sample(tiny_flux, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5)
    for patched in (steer(tiny_flux, sae, features="0", strength=0.0, mode="add"),
                    steer(tiny_flux, sae, features=str(DEAD), strength=5.0, mode="add where active"),
                    steer(tiny_flux, sae, site="single.attn", features="0, 1", strength=0.0, mode="add")):
        assert torch.equal(sample(patched, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5), plain)


def test_steering_changes_the_image(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    plain = sample(tiny_flux, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5)
    steered = sample(steer(tiny_flux, sae, features="0:4.0", mode="add"), positive, negative, latent=LATENT,
                     steps=3, cfg=2.0, seed=5)
    assert torch.isfinite(steered).all() and not torch.equal(steered, plain)


def test_input_model_untouched_and_no_hooks_left(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    diffusion_model = tiny_flux.get_model_object("diffusion_model")
    options_before = repr(tiny_flux.model_options)
    plain = sample(tiny_flux, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=6)
    for site, block in SITE_CASES:
        patched = steer(tiny_flux, sae, site=site, block=block, features="0:2.0", mode="set")
        sample(patched, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=6)
        assert hooks_left(diffusion_model) == []
    assert repr(tiny_flux.model_options) == options_before
    assert torch.equal(sample(tiny_flux, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=6), plain)


@pytest.mark.parametrize("site", ["double.img.attn", "single.attn", "double.img.out"])
def test_hooks_removed_when_sampling_raises(tiny_flux, tiny_cond, site):
    positive, negative = tiny_cond

    class Boom:
        calls = 0
        d_in, d_sae, device, hook = 64, 256, torch.device("cpu"), None
        labels = {}

        def steer(self, x, edits, keep_error=True):
            Boom.calls += 1
            if Boom.calls == 2:
                raise RuntimeError("boom")
            return x

        def to(self, device):
            return self

    patched = steer(tiny_flux, Boom(), site=site, block=1 if site != "double.img.out" else 0, features="1")
    with pytest.raises(RuntimeError, match="boom"):
        sample(patched, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=6)
    assert hooks_left(tiny_flux.get_model_object("diffusion_model")) == []
    plain = sample(tiny_flux, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=6)
    assert torch.isfinite(plain).all()


def test_two_nodes_chain_at_the_same_block(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    first = steer(tiny_flux, sae, features="0:2.0", mode="add")
    both = steer(first, sae, features="1:-1.0", mode="add")
    capture, _ = run_captured(tiny_flux, "double.img.out", 0, positive, negative, patched=both)
    before, after = capture.before[0], capture.after[0]
    expected = sae.steer(sae.steer(before[:, :16], edits_for([(0, 2.0)], "add")), edits_for([(1, -1.0)], "add"))
    torch.testing.assert_close(after[:, :16], expected, rtol=1e-5, atol=1e-5)


def test_chains_an_existing_block_replacement(tiny_flux, tiny_cond, sae):
    """Skip Layer Guidance and others use the same patches_replace keys: both must run."""
    positive, negative = tiny_cond
    calls = []
    other = tiny_flux.clone()

    def existing(args, extra):
        calls.append(1)
        return extra["original_block"](args)
    other.set_model_patch_replace(existing, "dit", "double_block", 0)
    patched = steer(other, sae, features="0:2.0", mode="add")
    sample(patched, positive, negative, latent=LATENT, steps=1, cfg=2.0, seed=1)
    assert calls


def test_low_precision_activations_stay_finite(tiny_cond, sae):
    positive, negative = tiny_cond
    for dtype in (torch.float16, torch.bfloat16):
        model = build_tiny_flux(seed=0, dtype=dtype)
        patched = steer(model, sae, features="0:50.0, 1:-50.0", mode="add")
        out = sample(patched, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=1)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("overrides,message", [
    (dict(block=2), "out of range"),
    (dict(site="single.out", block=7), "2 single blocks"),
    (dict(features="256"), "256 features"),
    (dict(features="1:abc"), "features"),
    (dict(start_percent=0.8, end_percent=0.2), "start_percent"),
    (dict(site="auto"), "auto"),
])
def test_bad_input_is_refused_before_sampling(tiny_flux, sae, overrides, message):
    with pytest.raises(ValueError, match=message):
        steer(tiny_flux, sae, **overrides)


def test_width_mismatch_names_both_widths(tiny_flux):
    wide = random_sae(d_in=3072, d_sae=64, k=4)
    with pytest.raises(ValueError, match="3072.*64"):
        steer(tiny_flux, wide)


@pytest.mark.parametrize("hook,expected", [
    ("transformer_blocks.18", ("double.img.out", 18)),
    ("transformer_blocks.0.attn", ("double.img.attn", 0)),
    ("transformer_blocks.3.ff", ("double.img.mlp", 3)),
    ("transformer_blocks.3.ff_context", ("double.txt.mlp", 3)),
    ("single_transformer_blocks.9", ("single.out", 9)),
    ("unet.single_transformer_blocks.9.attn", ("single.attn", 9)),
    ("single.attn.9", ("single.attn", 9)),
    ("blocks.8.hook_resid_post", None),
    (None, None),
])
def test_site_from_hook(hook, expected):
    assert site_from_hook(hook) == expected


def test_kontext_reference_tokens_are_not_image_tokens(tiny_flux, tiny_cond, sae):
    """Reference latents append tokens after the generated image's: `image` leaves them alone."""
    positive, negative = tiny_cond
    reference = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(9))  # 2x2 = 4 extra tokens
    with_ref = [[positive[0][0], {**positive[0][1], "reference_latents": [reference]}]]
    for tokens, steered_len in (("image", 16), ("all", 20)):
        patched = steer(tiny_flux, sae, site="double.img.out", features="0:3.0", mode="add", tokens=tokens)
        capture, _ = run_captured(tiny_flux, "double.img.out", 0, with_ref, with_ref, patched=patched)
        before, after = capture.before[0], capture.after[0]
        assert before.shape[1] == 20
        changed = (after != before).any(-1).any(0)
        assert torch.equal(changed, torch.arange(20) < steered_len)


def test_text_length_is_read_per_forward(tiny_flux, sae):
    """Positive and negative of different lengths run as separate forwards with their own split."""
    from comfyui_sae_steering.harness.tiny_flux import tiny_conditioning
    positive, negative = tiny_conditioning(seed=1, text_tokens=8), tiny_conditioning(seed=2, text_tokens=13)
    patched = steer(tiny_flux, sae, site="single.out", features="0:3.0", mode="add", tokens="image")
    capture, _ = run_captured(tiny_flux, "single.out", 0, positive, negative, patched=patched)
    assert sorted(txt for _, _, txt in capture.forwards) == [8, 13]
    for (_, _, txt_len), before, after in zip(capture.forwards, capture.before, capture.after):
        changed = (after != before).any(-1).any(0)
        expected = torch.zeros(before.shape[1], dtype=torch.bool)
        expected[txt_len:txt_len + 16] = True
        assert torch.equal(changed, expected)


def test_auto_site_comes_from_the_sae_metadata(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    hooked = random_sae(d_in=64, d_sae=256, k=8, seed=3, hook="single_transformer_blocks.1.attn")
    auto = steer(tiny_flux, hooked, site="auto", block=0, features="0:3.0", mode="add")
    explicit = steer(tiny_flux, hooked, site="single.attn", block=1, features="0:3.0", mode="add")
    a = sample(auto, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2)
    assert torch.equal(a, sample(explicit, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2))
    assert not torch.equal(a, sample(tiny_flux, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2))
