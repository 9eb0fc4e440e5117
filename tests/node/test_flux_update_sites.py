"""Residual-update sites (double.img.update, double.txt.update, single.update) on the tiny FLUX: the tap
sees exactly block output − block input, the steered output is the block output plus the SAE edit of that
update, and nothing changes where nothing is edited. The reference is plain torch hooks on the block
(inputs copied before the block adds into them in place), independent of the pack's taps."""
from __future__ import annotations

import contextlib

import pytest
import torch

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.harness.tiny_flux import empty_latent, sample
from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
from comfyui_sae_steering.nodes.sites.flux_sites import SITES, site_from_hook
from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
from comfyui_sae_steering.nodes.sites.tap import TapSpec, attach_tap
from flux_capture import Capture, hooks_left, popular_features

LATENT = empty_latent(64, 64)  # 16 image tokens; tiny_cond has 8 text tokens
IMG, TXT = 16, 8
CASES = [("double.img.update", 1), ("double.txt.update", 0), ("single.update", 1)]


@pytest.fixture(scope="module")
def sae():
    return random_sae(d_in=64, d_sae=256, k=8, seed=3)


@contextlib.contextmanager
def block_io(diffusion_model, site: str, block: int, record: list):
    """(input, output) of the block's stream per forward, copied by hooks on the block module itself."""
    spec = SITES[site]
    module = (diffusion_model.double_blocks if spec.block_type == "double" else diffusion_model.single_blocks)[block]
    pending = []

    def pre(_m, args, kwargs):
        if spec.block_type == "single":
            pending.append(args[0].clone())
        else:
            pending.append(kwargs["img" if spec.stream == "img" else "txt"].clone())

    def post(_m, _args, _kwargs, out):
        if spec.block_type == "double":
            out = out[0] if spec.stream == "img" else out[1]
        record.append((pending.pop(), out.detach().clone()))

    handles = [module.register_forward_pre_hook(pre, with_kwargs=True),
               module.register_forward_hook(post, with_kwargs=True)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def selected(site, tokens, length):
    stream = SITES[site].stream
    if stream == "txt":
        return slice(0, length)
    if stream == "img":
        return slice(0, length) if tokens == "all" else slice(0, IMG)
    return {"text": slice(0, TXT), "image": slice(TXT, TXT + IMG), "all": slice(0, length)}[tokens]


def steer(model, sae, **overrides):
    inputs = dict(site="double.img.update", block=0, tokens="image", features="3", strength=1.0,
                  mode="add where active", keep_error=True, start_percent=0.0, end_percent=1.0, apply_to="both")
    inputs.update(overrides)
    return SAEFluxSteer.execute(model=model, sae=sae, **inputs).result[0]


@pytest.mark.parametrize("site,block", CASES)
@pytest.mark.parametrize("tokens", ["image", "all"])
def test_tap_sees_exactly_output_minus_input(tiny_flux, tiny_cond, site, block, tokens):
    positive, negative = tiny_cond
    seen = []
    patched, _ = attach_tap(tiny_flux, TapSpec(site, block, tokens), lambda x, event: seen.append(x.clone()))
    reference = []
    with block_io(tiny_flux.get_model_object("diffusion_model"), site, block, reference):
        sample(patched, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=4)
    assert len(seen) == len(reference) == 2
    for update, (inp, out) in zip(seen, reference):
        expected = (out - inp)[:, selected(site, tokens, out.shape[1])]
        assert torch.equal(update, expected)
        assert update.abs().max() > 0


@pytest.mark.parametrize("site,block", CASES)
@pytest.mark.parametrize("mode", ["add", "add where active", "set"])
@pytest.mark.parametrize("keep_error", [True, False])
def test_steered_output_is_output_plus_the_edit_of_the_update(tiny_flux, tiny_cond, sae, site, block, mode,
                                                              keep_error):
    positive, negative = tiny_cond
    tokens = "image" if SITES[site].block_type == "single" else "all"
    plain = []
    with block_io(tiny_flux.get_model_object("diffusion_model"), site, block, plain):
        sample(tiny_flux, positive, negative, latent=LATENT, steps=1, cfg=2.0, seed=4)
    inp, out = plain[0]
    features = popular_features(sae, (out - inp)[:, selected(site, tokens, out.shape[1])])
    assert features, "the test SAE must have features that fire on some tokens of the update"
    spec = ", ".join(f"{f}:{v}" for f, v in zip(features, (2.0, -1.5, 0.5)))
    patched = steer(tiny_flux, sae, site=site, block=block, features=spec, mode=mode, keep_error=keep_error,
                    tokens=tokens)
    capture = Capture(site, block, hidden=64)
    target = patched.clone()
    capture.add_after(target)  # what flows on after the pack's patch
    reference = []
    with block_io(tiny_flux.get_model_object("diffusion_model"), site, block, reference):
        sample(target, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=4)
    edits = edits_for(parse_features(spec, 1.0), mode)
    changed_somewhere = False
    for (inp, out), after in zip(reference, capture.after):
        sel = selected(site, tokens, out.shape[1])
        update = (out - inp)[:, sel]
        expected = out.clone()
        expected[:, sel] = out[:, sel] + (sae.steer(update, edits, keep_error=keep_error) - update)
        torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
        untouched = torch.ones(out.shape[1], dtype=torch.bool)
        untouched[sel] = False
        assert torch.equal(after[:, untouched], out[:, untouched])
        changed_somewhere |= not torch.equal(after, out)
    assert changed_somewhere
    assert hooks_left(tiny_flux.get_model_object("diffusion_model")) == []


@pytest.mark.parametrize("site,block", CASES)
def test_strength_zero_is_bit_identical(tiny_flux, tiny_cond, sae, site, block):
    positive, negative = tiny_cond
    plain = sample(tiny_flux, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5)
    patched = steer(tiny_flux, sae, site=site, block=block, features="0, 3", strength=0.0, mode="add")
    assert torch.equal(sample(patched, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5), plain)
    moved = steer(tiny_flux, sae, site=site, block=block, features="0:3.0", mode="add")
    assert not torch.equal(sample(moved, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5), plain)


@pytest.mark.parametrize("apply_to", ["positive", "negative"])
def test_apply_to_steers_only_that_half(tiny_flux, tiny_cond, sae, apply_to):
    positive, negative = tiny_cond
    patched = steer(tiny_flux, sae, site="double.img.update", block=0, features="0:3.0", mode="add",
                    apply_to=apply_to)
    capture = Capture("double.img.update", 0, hidden=64)
    target = patched.clone()
    capture.add_after(target)
    reference = []
    with block_io(tiny_flux.get_model_object("diffusion_model"), "double.img.update", 0, reference):
        sample(target, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=4)
    wanted = 0 if apply_to == "positive" else 1
    for (cond_or_uncond, _, _), (_, out), after in zip(capture.forwards, reference, capture.after):
        rows = torch.tensor(cond_or_uncond).repeat_interleave(out.shape[0] // len(cond_or_uncond))
        assert torch.equal((after != out).flatten(1).any(1), rows == wanted)


@pytest.mark.parametrize("hook,expected", [
    ("transformer_blocks.18.update", ("double.img.update", 18)),
    ("transformer.transformer_blocks.18.update", ("double.img.update", 18)),
    ("transformer_blocks.2.update_context", ("double.txt.update", 2)),
    ("single_transformer_blocks.7.update", ("single.update", 7)),
    ("double.img.update.4", ("double.img.update", 4)),
    ("single.update:3", ("single.update", 3)),
    ("transformer_blocks.18", ("double.img.out", 18)),
])
def test_site_from_hook_reads_the_update_marker(hook, expected):
    assert site_from_hook(hook) == expected


def test_auto_site_of_an_sdxl_unbox_flux_folder(tiny_flux, tiny_cond, tmp_path):
    """An sdxl-unbox folder named after transformer_blocks.1 loads with the update hook; auto steers there."""
    from comfyui_sae_steering.sae import load_sae
    sae = random_sae(d_in=64, d_sae=256, k=8, seed=3)
    folder = tmp_path / "transformer.transformer_blocks.1_k8_hidden256_auxk256_bs4096_lr0.0001" / "final"
    folder.mkdir(parents=True)
    state = {"encoder.weight": sae.W_enc, "decoder.weight": sae.W_dec.T.contiguous(), "pre_bias": sae.b_pre,
             "latent_bias": sae.b_enc}
    torch.save({"state_dict": state}, folder / "state_dict.pth")
    (folder / "config.json").write_text('{"n_dirs_local": 256, "d_model": 64, "k": 8, "auxk": 256}')
    loaded = load_sae(folder.parent)
    assert loaded.hook == "transformer.transformer_blocks.1.update"
    positive, negative = tiny_cond
    auto = steer(tiny_flux, loaded, site="auto", block=0, features="0:3.0", mode="add")
    explicit = steer(tiny_flux, loaded, site="double.img.update", block=1, features="0:3.0", mode="add")
    a = sample(auto, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2)
    assert torch.equal(a, sample(explicit, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2))
    assert not torch.equal(a, sample(tiny_flux, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2))


def test_feature_mean_unit_from_the_sae_means_without_a_scale(tiny_flux, tiny_cond):
    """strength_unit '× feature mean' reads an sdxl-unbox SAE's mean.pt when no scale is connected."""
    sae = random_sae(d_in=64, d_sae=256, k=8, seed=3)
    sae.feature_means = torch.rand(256, generator=torch.Generator().manual_seed(0)) + 0.5
    positive, negative = tiny_cond
    common = dict(site="double.img.update", block=1, mode="add")
    in_means = steer(tiny_flux, sae, features="7:2.0, 9:-1.0", strength_unit="× feature mean", **common)
    absolute = steer(tiny_flux, sae, features=f"7:{2.0 * float(sae.feature_means[7])}, "
                                               f"9:{-1.0 * float(sae.feature_means[9])}", **common)
    a = sample(in_means, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2)
    assert torch.equal(a, sample(absolute, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2))
    assert not torch.equal(a, sample(tiny_flux, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=2))
    sae.feature_means = None
    with pytest.raises(ValueError, match="needs the scale input"):
        steer(tiny_flux, sae, features="7:2.0", strength_unit="× feature mean", **common)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_update_sites_stay_finite_and_steer(tiny_cond, sae, dtype):
    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux
    positive, negative = tiny_cond
    model = build_tiny_flux(seed=0, dtype=dtype)
    plain = sample(model, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=1)
    for site in ("double.img.update", "single.update"):
        out = sample(steer(model, sae, site=site, features="0:5.0, 1:-5.0", mode="add"), positive, negative,
                     latent=LATENT, steps=2, cfg=2.0, seed=1)
        assert torch.isfinite(out).all() and not torch.equal(out, plain)
