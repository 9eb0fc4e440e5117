"""``SAESteer`` ("SAE Steer"): the FLUX node's inputs on every family the pack hooks. FLUX sites give exactly
what SAE Steer FLUX gives; SD1.5/SDXL sites exactly what the UNet tap gives with the same callback (itself
checked against plain torch hooks in test_unet_sites.py); strength 0 and an empty mask are bit-identical."""
from __future__ import annotations

import pytest
import torch

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.harness.tiny_flux import sample
from comfyui_sae_steering.harness.tiny_unet import tiny_unet_conditioning
from comfyui_sae_steering.nodes.extension import NODES
from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
from comfyui_sae_steering.nodes.steer.sae_steer_node import SAESteer
from comfyui_sae_steering.nodes.steer.steer_callback import SteerCallback
from comfyui_sae_steering.nodes.sites.unet_sites import unet_sites
from comfyui_sae_steering.nodes.sites.unet_tap import UNetTapSpec, attach_unet_tap
from flux_capture import hooks_left

LATENT = torch.zeros(1, 4, 8, 8)
SITE = "mid_block.attentions.0"
DEFAULTS = dict(block=0, tokens="image", strength=1.0, mode="add", keep_error=True, start_percent=0.0,
                end_percent=1.0, apply_to="both")


@pytest.fixture
def unet(tiny_unet):
    return tiny_unet


conditioning = tiny_unet_conditioning


def width(model, site=SITE):
    diffusion_model = model.get_model_object("diffusion_model")
    return diffusion_model.get_submodule(unet_sites(diffusion_model)[site]).in_channels


def run(model, family):
    return sample(model, conditioning(family, 1), conditioning(family, 2), latent=LATENT, steps=2, cfg=2.0, seed=3)


def steer(model, sae, **overrides):
    return SAESteer.execute(model=model, sae=sae, **{**DEFAULTS, "site": SITE, "features": "0:3.0, 1:-2.0", **overrides}).result[0]


@pytest.mark.parametrize("site", [SITE, SITE + ".update"])
def test_unet_site_is_the_unet_tap_with_the_steer_callback(unet, site):
    family, model = unet
    sae = random_sae(width(model), 16, seed=1)
    edits = edits_for(parse_features("0:3.0, 1:-2.0", 1.0, sae.d_sae), "add")
    name, reads = (SITE, "update") if site.endswith(".update") else (SITE, "out")
    reference, _ = attach_unet_tap(model, UNetTapSpec(name, reads), SteerCallback(sae, edits, True), d_in=sae.d_in)
    got = run(steer(model, sae, site=site), family)
    assert torch.equal(got, run(reference, family))
    assert not torch.equal(got, run(model, family))  # it steers
    assert hooks_left(model.get_model_object("diffusion_model")) == []


def test_strength_zero_and_an_empty_mask_are_bit_identical(unet):
    family, model = unet
    sae = random_sae(width(model), 16, seed=1)
    plain = run(model, family)
    assert torch.equal(run(steer(model, sae, features="0:0"), family), plain)
    assert torch.equal(run(steer(model, sae, mask=torch.zeros(1, 32, 32)), family), plain)


def test_unet_site_on_flux_and_flux_site_on_a_unet_are_refused(unet, tiny_flux):
    family, model = unet
    # one line naming the model's family and its sites (every site node: tests/node/test_any_site.py)
    with pytest.raises(ValueError, match=rf"^site '{SITE}' is a UNet \(SD1.5/SDXL\) site; this model \(family: "
                                         r"FLUX.1\) has the FLUX sites double.img.out, "):
        steer(tiny_flux, random_sae(64, 16, seed=1))
    with pytest.raises(ValueError, match=rf"^site 'double.img.out' is a FLUX site; this model \(family: "
                                         rf"{'SD1.5' if family == 'SD15' else family}\) has the UNet \(SD1.5/SDXL\) "
                                         rf"sites down_blocks.0.attentions.0, "):
        steer(model, random_sae(width(model), 16, seed=1), site="double.img.out")


def test_flux_sites_give_what_sae_steer_flux_gives(tiny_flux, tiny_cond):
    sae = random_sae(tiny_flux.get_model_object("diffusion_model").hidden_size, 32, seed=2)
    args = {**DEFAULTS, "site": "double.img.out", "block": 1, "features": "3:2.0"}
    positive, negative = tiny_cond
    from comfyui_sae_steering.harness.tiny_flux import empty_latent
    go = lambda m: sample(m, positive, negative, latent=empty_latent(64, 64), steps=2, cfg=2.0, seed=4)  # noqa: E731
    assert torch.equal(go(SAESteer.execute(model=tiny_flux, sae=sae, **args).result[0]),
                       go(SAEFluxSteer.execute(model=tiny_flux, sae=sae, **args).result[0]))


def test_registered_with_the_flux_node_inputs():
    assert SAESteer in NODES
    ours = [i.id for i in SAESteer.define_schema().inputs]
    assert ours == [i.id for i in SAEFluxSteer.define_schema().inputs]
    site = next(i for i in SAESteer.define_schema().inputs if i.id == "site")
    assert {"double.img.out", "single.out", SITE, SITE + ".update", "up_blocks.3.attentions.2", "auto"} <= set(site.options)
