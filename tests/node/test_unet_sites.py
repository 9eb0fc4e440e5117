"""SD1.5 / SDXL spatial-transformer sites on tiny UNets built as ComfyUI builds them: the table against
ComfyUI's own diffusers key map, capture and steering against plain torch hooks on the same module
(output, and output − input for update sites), CFG-half selection, strength-0 bit identity, errors."""
from __future__ import annotations

import pytest
import torch

import comfy.patcher_extension
import comfy.utils

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.harness.tiny_flux import sample
from comfyui_sae_steering.harness.tiny_unet import tiny_unet_conditioning
from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
from comfyui_sae_steering.nodes.steer.steer_callback import SteerCallback
from comfyui_sae_steering.nodes.sites.unet_sites import unet_site_from_hook, unet_sites
from comfyui_sae_steering.nodes.sites.unet_tap import UNetTapSpec, attach_unet_tap
from flux_capture import hooks_left, popular_features
from unet_capture import module_io, tokens_of

LATENT = torch.zeros(1, 4, 8, 8)


@pytest.fixture
def unet(tiny_unet):
    return tiny_unet


conditioning = tiny_unet_conditioning


def diffusers_map(unet_config) -> dict[str, str]:
    """Spatial transformers in ComfyUI's own diffusers <-> ComfyUI key map (comfy.utils.unet_to_diffusers)."""
    suffix = ".proj_in.weight"
    return {k[:-len(suffix)]: v[:-len(suffix)] for k, v in comfy.utils.unet_to_diffusers(unet_config).items()
            if k.endswith(suffix) and "transformer_blocks" not in k}


def test_table_matches_comfyui_key_map(unet):
    family, model = unet
    sites = unet_sites(model.get_model_object("diffusion_model"))
    assert sites == diffusers_map(model.model.model_config.unet_config)
    assert list(sites) == ["down_blocks.0.attentions.0", "down_blocks.1.attentions.0", "mid_block.attentions.0",
                           "up_blocks.0.attentions.0", "up_blocks.0.attentions.1", "up_blocks.1.attentions.0",
                           "up_blocks.1.attentions.1"]


FULL_SIZE = {  # ComfyUI v0.8.0 model detection's configs (comfy/model_detection.py)
    "SDXL": dict(num_classes="sequential", adm_in_channels=2816, num_res_blocks=[2, 2, 2],
                 transformer_depth=[0, 0, 2, 2, 10, 10], channel_mult=[1, 2, 4], transformer_depth_middle=10,
                 use_linear_in_transformer=True, context_dim=2048, num_head_channels=64,
                 transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10]),
    "SD15": dict(adm_in_channels=None, num_res_blocks=[2, 2, 2, 2], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                 channel_mult=[1, 2, 4, 4], transformer_depth_middle=1, use_linear_in_transformer=False,
                 context_dim=768, num_heads=8, transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]),
}
PUBLIC_SAE_SITES = {  # sdxl-unbox (SDXL-Turbo) and SAeUron (SD1.5) blocks, with their widths
    "SDXL": {"down_blocks.2.attentions.1": ("input_blocks.8.1", 1280), "mid_block.attentions.0": ("middle_block.1", 1280),
             "up_blocks.0.attentions.0": ("output_blocks.0.1", 1280), "up_blocks.0.attentions.1": ("output_blocks.1.1", 1280)},
    "SD15": {"up_blocks.1.attentions.1": ("output_blocks.4.1", 1280), "up_blocks.1.attentions.2": ("output_blocks.5.1", 1280)},
}


@pytest.mark.parametrize("family", ["SDXL", "SD15"])
def test_full_size_tables_name_the_public_sae_blocks(family):
    """The real layouts on the meta device (no weights): the blocks public SAEs were trained on."""
    import comfy.supported_models
    config = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
                  in_channels=4, model_channels=320, use_temporal_attention=False, use_temporal_resblock=False,
                  dtype=torch.float32, **FULL_SIZE[family])
    model_config = getattr(comfy.supported_models, family)(config)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=torch.device("meta"))
    sites = unet_sites(model.diffusion_model)
    assert sites == diffusers_map(model_config.unet_config)
    for name, (path, width) in PUBLIC_SAE_SITES[family].items():
        assert sites[name] == path
        assert model.diffusion_model.get_submodule(path).in_channels == width


def after_edit(patched, site, record):
    """What flows on from the site's module after the pack's hook: a hook registered after it, per forward."""
    def wrapper(executor, *args, **kwargs):
        module = executor.class_obj.get_submodule(unet_sites(executor.class_obj)[site])
        options = args[5]
        handle = module.register_forward_hook(
            lambda m, i, out: record.append((list(options["cond_or_uncond"]), out.clone())))
        try:
            return executor(*args, **kwargs)
        finally:
            handle.remove()
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_after", wrapper)
    return patched


@pytest.mark.parametrize("site", ["down_blocks.1.attentions.0", "mid_block.attentions.0", "up_blocks.0.attentions.1"])
@pytest.mark.parametrize("reads", ["out", "update"])
def test_capture_is_exactly_the_module_output_or_update(unet, site, reads):
    family, model = unet
    seen = []
    patched, _ = attach_unet_tap(model, UNetTapSpec(site, reads), lambda x, event: seen.append((x.clone(), event.grid)))
    reference = []
    with module_io(model, site, reference):
        sample(patched, conditioning(family, 1), conditioning(family, 2), latent=LATENT, steps=2, cfg=2.0, seed=3)
    assert len(seen) == len(reference) == 2
    for (x, grid), (inp, out) in zip(seen, reference):
        expected = tokens_of(out) - tokens_of(inp) if reads == "update" else tokens_of(out)
        assert torch.equal(x, expected) and x.abs().max() > 0
        assert grid == tuple(out.shape[-2:])
    assert hooks_left(model.get_model_object("diffusion_model")) == []


@pytest.mark.parametrize("site", ["down_blocks.0.attentions.0", "up_blocks.1.attentions.1"])
@pytest.mark.parametrize("reads", ["out", "update"])
@pytest.mark.parametrize("mode", ["add", "add where active", "set"])
def test_steering_matches_the_kernel_on_the_hooked_tensor(unet, site, reads, mode):
    family, model = unet
    positive, negative = conditioning(family, 1), conditioning(family, 2)
    width = model.get_model_object("diffusion_model").get_submodule(
        unet_sites(model.get_model_object("diffusion_model"))[site]).in_channels
    sae = random_sae(d_in=width, d_sae=128, k=6, seed=4)
    plain = []
    with module_io(model, site, plain):
        sample(model, positive, negative, latent=LATENT, steps=1, cfg=2.0, seed=3)
    inp, out = plain[0]
    features = popular_features(sae, tokens_of(out) - tokens_of(inp) if reads == "update" else tokens_of(out))
    assert features
    spec = ", ".join(f"{f}:{v}" for f, v in zip(features, (2.0, -1.5, 0.5)))
    edits = edits_for(parse_features(spec, 1.0), mode)
    patched, _ = attach_unet_tap(model, UNetTapSpec(site, reads), SteerCallback(sae, edits), d_in=width)
    after_edit(patched, site, after := [])
    with module_io(model, site, before := []):
        sample(patched, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=3)
    assert len(before) == len(after) == 2
    assert torch.equal(before[0][0], inp)  # the first forward sees the unpatched input
    for (inp, out), (_, edited) in zip(before, after):
        o = tokens_of(out)
        if reads == "update":
            u = o - tokens_of(inp)
            expected = o + (sae.steer(u, edits) - u)
        else:
            expected = sae.steer(o, edits)
        torch.testing.assert_close(tokens_of(edited), expected, rtol=1e-5, atol=1e-5)
        assert not torch.equal(edited, out)


@pytest.mark.parametrize("apply_to", ["positive", "negative"])
def test_apply_to_edits_only_that_half(unet, apply_to):
    family, model = unet
    site = "mid_block.attentions.0"
    width = model.get_model_object("diffusion_model").get_submodule("middle_block.1").in_channels
    sae = random_sae(d_in=width, d_sae=128, k=6, seed=4)
    patched, _ = attach_unet_tap(model, UNetTapSpec(site, "update", apply_to),
                                 SteerCallback(sae, edits_for(parse_features("0:3.0", 1.0), "add")))
    after_edit(patched, site, after := [])
    with module_io(model, site, before := []):
        sample(patched, conditioning(family, 1), conditioning(family, 2), latent=LATENT, steps=2, cfg=2.0, seed=3)
    wanted = 0 if apply_to == "positive" else 1
    for (cond_or_uncond, edited), (_, out) in zip(after, before):
        rows = torch.tensor(cond_or_uncond).repeat_interleave(out.shape[0] // len(cond_or_uncond))
        assert torch.equal((edited != out).flatten(1).any(1), rows == wanted)


@pytest.mark.parametrize("reads", ["out", "update"])
def test_strength_zero_is_bit_identical(unet, reads):
    family, model = unet
    positive, negative = conditioning(family, 1), conditioning(family, 2)
    site = "up_blocks.0.attentions.0"
    width = model.get_model_object("diffusion_model").get_submodule(
        unet_sites(model.get_model_object("diffusion_model"))[site]).in_channels
    sae = random_sae(d_in=width, d_sae=128, k=6, seed=4)
    plain = sample(model, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5)
    for strength, same in ((0.0, True), (3.0, False)):
        edits = edits_for(parse_features("0, 1", strength), "add")
        patched, _ = attach_unet_tap(model, UNetTapSpec(site, reads), SteerCallback(sae, edits))
        assert torch.equal(sample(patched, positive, negative, latent=LATENT, steps=3, cfg=2.0, seed=5), plain) == same


def test_bad_input_is_refused_before_sampling(unet, tiny_flux):
    family, model = unet
    name = {"SDXL": "SDXL", "SD15": "SD1.5"}[family]
    with pytest.raises(ValueError, match=rf"site 'down_blocks.2.attentions.1' is not in this {name} model; it has "
                                         r"down_blocks.0.attentions.0, down_blocks.1.attentions.0, mid_block"):
        attach_unet_tap(model, UNetTapSpec("down_blocks.2.attentions.1"), lambda x, e: None)
    with pytest.raises(ValueError, match=rf"the SAE reads 7-d activations but mid_block.attentions.0 of this {name} "
                                         r"model has 64 channels"):
        attach_unet_tap(model, UNetTapSpec("mid_block.attentions.0"), lambda x, e: None, d_in=7)
    with pytest.raises(ValueError, match="UNet sites need an SD1.5 or SDXL model; this one is FLUX.1"):
        attach_unet_tap(tiny_flux, UNetTapSpec("mid_block.attentions.0"), lambda x, e: None)


@pytest.mark.parametrize("hook,expected", [
    ("unet.down_blocks.2.attentions.1.update", ("down_blocks.2.attentions.1", "update")),
    ("unet.mid_block.attentions.0", ("mid_block.attentions.0", "out")),
    ("up_blocks.1.attentions.2", ("up_blocks.1.attentions.2", "out")),
    ("up_blocks.1.attentions.2.transformer_blocks.0", None),
    ("transformer_blocks.18.update", None),
    ("xup_blocks.1.attentions.2", None),
    (None, None),
])
def test_hook_names(hook, expected):
    assert unet_site_from_hook(hook) == expected


def test_sdxl_unbox_folder_names_its_unet_site(tmp_path):
    import sae_layouts
    from comfyui_sae_steering.sae import load_sae
    ref = sae_layouts.unbox(tmp_path, block="unet.up_blocks.0.attentions.1")
    assert unet_site_from_hook(load_sae(ref.path).hook) == ("up_blocks.0.attentions.1", "update")


def test_step_window(unet):
    family, model = unet
    called = []
    patched, _ = attach_unet_tap(model, UNetTapSpec("mid_block.attentions.0", "update", start_percent=0.5),
                                 lambda x, event: called.append(event.sigma))
    sample(patched, conditioning(family, 1), conditioning(family, 2), latent=LATENT, steps=4, cfg=2.0, seed=3)
    import comfy.samplers
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", 4)[:-1].tolist()
    start = float(sampling.percent_to_sigma(0.5))
    expected = [s for s in sigmas if s <= start]
    assert 0 < len(expected) < len(sigmas)
    assert called == pytest.approx(expected, rel=1e-6)
