"""The one site dispatcher (nodes/sites/any_site.py): the family table, ``auto`` in the model's family, the keys
measured sites go by, and the one-line errors every site node gives a site of another family."""
from __future__ import annotations

import re

import pytest
import torch

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.harness.tiny_flux import empty_latent, tiny_conditioning
from comfyui_sae_steering.harness.tiny_unet import tiny_unet_conditioning
from comfyui_sae_steering.nodes.measure.activation_scale_node import SAEActivationScale
from comfyui_sae_steering.nodes.scan.feature_contrast_node import SAEFeatureContrast
from comfyui_sae_steering.nodes.scan.feature_scan_node import SAEFeatureScan
from comfyui_sae_steering.nodes.scan.image_scan_node import SAEImageFeatureScan
from comfyui_sae_steering.nodes.sites import any_site
from comfyui_sae_steering.nodes.sites.dit_sites import dit_site_choices
from comfyui_sae_steering.nodes.sites.flux_sites import SITE_NAMES
from comfyui_sae_steering.nodes.sites.tap import TapSpec
from comfyui_sae_steering.nodes.sites.unet_sites import UNET_SITE_CHOICES
from comfyui_sae_steering.nodes.steer.concept_erase_node import SAEConceptErase
from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
from comfyui_sae_steering.nodes.steer.sae_steer_node import SAESteer

NAME = {"SDXL": "SDXL", "SD15": "SD1.5"}
TINY_UNET_SITES = ("down_blocks.0.attentions.0, down_blocks.1.attentions.0, mid_block.attentions.0, "
                   "up_blocks.0.attentions.0, up_blocks.0.attentions.1, up_blocks.1.attentions.0, "
                   "up_blocks.1.attentions.1 (each also as .update)")
FLUX_SITES = ", ".join(SITE_NAMES) + " (blocks: double 0-1, single 0-1)"
EVERY_SITE = SITE_NAMES + UNET_SITE_CHOICES + dit_site_choices()


@pytest.fixture
def unet(tiny_unet):
    return tiny_unet


def test_the_table_names_each_site_once():
    assert any_site.site_choices() == EVERY_SITE
    assert len(set(EVERY_SITE)) == len(EVERY_SITE)
    assert [f.name for f in any_site.FAMILIES] == ["FLUX", "UNet (SD1.5/SDXL)", "DiT"]
    assert [f.models for f in any_site.FAMILIES] == [
        ("FLUX.1", "FLUX.2", "Chroma"), ("SDXL", "SD1.5"),
        ("SD3/3.5", "Qwen-Image", "Lumina2", "Z-Image", "Wan 2.1", "Wan 2.2")]
    for name in SITE_NAMES:
        assert any_site.family_of_site(name) is any_site.FLUX
    for name in UNET_SITE_CHOICES:
        assert any_site.family_of_site(name) is any_site.UNET
    for name in dit_site_choices():
        assert any_site.family_of_site(name) is any_site.DIT
    for name in ("auto", "all blocks", "unet.mid_block.attentions.0", "mid_block.attentions.0.out", "double.img",
                 "transformer_blocks", "transformer_blocks.18", "blocks.out.3"):
        assert any_site.family_of_site(name) is None
    assert any_site.site_key("double.img.out", 3) == "double.img.out[3]"
    assert any_site.site_key("layers.update", 3) == "layers.update[3]"
    assert any_site.site_key("mid_block.attentions.0.update", 3) == "mid_block.attentions.0.update"
    assert any_site.describe_site("single.out", 2) == "single.out block 2"
    assert any_site.describe_site("up_blocks.0.attentions.1", 2) == "up_blocks.0.attentions.1"


@pytest.mark.parametrize("node", [SAESteer, SAEActivationScale, SAEFeatureScan, SAEImageFeatureScan,
                                  SAEFeatureContrast, SAEConceptErase])
def test_site_nodes_offer_every_family(node):
    site = next(i for i in node.define_schema().inputs if i.id == "site")
    assert site.options[:len(EVERY_SITE) + 1] == EVERY_SITE + ["auto"]
    assert site.default == "double.img.out"


def test_sae_steer_flux_stays_flux_only():
    site = next(i for i in SAEFluxSteer.define_schema().inputs if i.id == "site")
    assert site.options == SITE_NAMES + ["auto"]


def test_auto_in_the_models_family(unet, tiny_flux):
    family, model = unet
    unbox = random_sae(d_in=64, d_sae=32, k=4, hook="unet.up_blocks.0.attentions.1.update")
    assert any_site.resolve_site(model, "auto", 7, unbox) == ("up_blocks.0.attentions.1.update", 0)
    assert any_site.resolve_site(model, "mid_block.attentions.0", 7, None) == ("mid_block.attentions.0", 0)
    flux_sae = random_sae(d_in=64, d_sae=32, k=4, hook="transformer.transformer_blocks.1.update")
    assert any_site.resolve_site(tiny_flux, "auto", 0, flux_sae) == ("double.img.update", 1)
    assert any_site.resolve_site(tiny_flux, "single.out", 1, None) == ("single.out", 1)
    with pytest.raises(ValueError, match=rf"^site is 'auto' but the SAE's metadata names no UNet \(SD1.5/SDXL\) site "
                                         rf"\(hook='transformer.transformer_blocks.1.update'\); choose one of "
                                         rf"{re.escape(TINY_UNET_SITES)} and the block$"):
        any_site.resolve_site(model, "auto", 0, flux_sae)
    with pytest.raises(ValueError, match=r"^site is 'auto' but the SAE's metadata names no FLUX site "
                                         r"\(hook='unet.up_blocks.0.attentions.1.update'\)"):
        any_site.resolve_site(tiny_flux, "auto", 0, unbox)


def unet_site_on_flux(site="mid_block.attentions.0"):
    return (rf"^site '{re.escape(site)}' is a UNet \(SD1.5/SDXL\) site; this model \(family: FLUX.1\) has the FLUX "
            rf"sites {re.escape(FLUX_SITES)}$")


def flux_site_on_unet(family, site="double.img.out"):
    return (rf"^site '{re.escape(site)}' is a FLUX site; this model \(family: {re.escape(NAME[family])}\) has the "
            rf"UNet \(SD1.5/SDXL\) sites {re.escape(TINY_UNET_SITES)}$")


def node_calls(model, sae, site, positive, latent, vae):
    """Every site node, called at ``site`` with otherwise valid inputs (the site is refused before ``vae`` is used)."""
    sampling = dict(steps=1, seed=0, cfg=1.0, sampler_name="euler", scheduler="simple")
    return {
        "SAESteer": lambda: SAESteer.execute(model=model, sae=sae, site=site, block=0, tokens="image", features="1",
                                             strength=1.0, mode="add", keep_error=True, start_percent=0.0,
                                             end_percent=1.0, apply_to="both"),
        "SAEActivationScale": lambda: SAEActivationScale.execute(model=model, positive=positive, latent=latent,
                                                                 site=site, block=0, sae=sae, **sampling),
        "SAEFeatureScan": lambda: SAEFeatureScan.execute(model=model, sae=sae, positive=positive, latent=latent,
                                                         site=site, block=0, tokens="image", top_n=4, **sampling),
        "SAEImageFeatureScan": lambda: SAEImageFeatureScan.execute(
            model=model, sae=sae, image=torch.zeros(1, 64, 64, 3), vae=vae, positive=positive, site=site, block=0,
            tokens="image", percent=0.5, seed=0, top_n=4),
        "SAEFeatureContrast": lambda: SAEFeatureContrast.execute(
            model=model, sae=sae, latent=latent, site=site, block=0, tokens="image", top_n=4,
            rank_by="mean difference", strength=1.0, concept=positive, neutral=positive, **sampling),
        "SAEConceptErase": lambda: SAEConceptErase.execute(
            model=model, sae=sae, site=site, block=0, tokens="image", features="1", multiplier=1.0, push_to="zero",
            threshold="value", threshold_value=0.0, apply_to="both", top_n=4),
    }


NODE_NAMES = ["SAESteer", "SAEActivationScale", "SAEFeatureScan", "SAEImageFeatureScan", "SAEFeatureContrast",
              "SAEConceptErase"]


@pytest.mark.parametrize("node", NODE_NAMES)
def test_a_unet_site_on_flux_is_refused_naming_the_family_and_its_sites(tiny_flux, node):
    sae = random_sae(d_in=64, d_sae=32, k=4)
    calls = node_calls(tiny_flux, sae, "mid_block.attentions.0.update", tiny_conditioning(seed=1),
                       {"samples": empty_latent(64, 64)}, None)
    with pytest.raises(ValueError, match=unet_site_on_flux("mid_block.attentions.0.update")):
        calls[node]()


@pytest.mark.parametrize("node", NODE_NAMES)
def test_a_flux_site_on_a_unet_is_refused_naming_the_family_and_its_sites(unet, node):
    family, model = unet
    sae = random_sae(d_in=64, d_sae=32, k=4)
    calls = node_calls(model, sae, "single.attn", tiny_unet_conditioning(family, 1),
                       {"samples": torch.zeros(1, 4, 8, 8)}, None)
    with pytest.raises(ValueError, match=flux_site_on_unet(family, "single.attn")):
        calls[node]()


def test_a_site_the_unet_lacks_and_a_wrong_width(unet):
    family, model = unet
    calls = node_calls(model, random_sae(d_in=64, d_sae=32, k=4), "down_blocks.2.attentions.1",
                       tiny_unet_conditioning(family, 1), {"samples": torch.zeros(1, 4, 8, 8)}, None)
    with pytest.raises(ValueError, match=rf"^site 'down_blocks.2.attentions.1' is not in this {NAME[family]} model; "
                                         r"it has down_blocks.0.attentions.0, "):
        calls["SAEFeatureScan"]()
    calls = node_calls(model, random_sae(d_in=7, d_sae=32, k=4), "mid_block.attentions.0",
                       tiny_unet_conditioning(family, 1), {"samples": torch.zeros(1, 4, 8, 8)}, None)
    with pytest.raises(ValueError, match=rf"^the SAE reads 7-d activations but mid_block.attentions.0 of this "
                                         rf"{NAME[family]} model has 64 channels"):
        calls["SAEActivationScale"]()


def test_attach_site_leaves_the_model_alone(unet):
    family, model = unet
    options = repr(model.model_options)
    patched, tap = any_site.attach_site(model, TapSpec("mid_block.attentions.0.update", 5), lambda x, e: None)
    assert patched is not model and repr(model.model_options) == options
    assert (tap.spec.site, tap.spec.reads) == ("mid_block.attentions.0", "update")


def test_a_family_no_table_covers_is_refused_naming_the_hooked_ones():
    from comfyui_sae_steering.harness.tiny_unet import build_tiny_unet
    model = build_tiny_unet("SD20")
    message = (r"^this node's sites are not available for this model \(family: SD2.x\); supported model families: "
               r"FLUX.1, FLUX.2, Chroma, SDXL, SD1.5, SD3/3.5, Qwen-Image, Lumina2, Z-Image, Wan 2.1, Wan 2.2$")
    calls = node_calls(model, random_sae(d_in=64, d_sae=32, k=4), "mid_block.attentions.0",
                       tiny_unet_conditioning("SD15", 1), {"samples": torch.zeros(1, 4, 8, 8)}, None)
    for node in NODE_NAMES:
        with pytest.raises(ValueError, match=message):
            calls[node]()
    with pytest.raises(ValueError, match=message):
        any_site.attach_site(model, TapSpec("double.img.out", 0), lambda x, e: None)


def test_a_foreign_site_is_refused_before_its_strength_unit_is_read(unet):
    """Without a scale, "× token norm" would ask for one measured at the foreign site: the site is refused first."""
    family, model = unet
    sae = random_sae(d_in=3072, d_sae=32, k=4)
    with pytest.raises(ValueError, match=flux_site_on_unet(family)):
        SAESteer.execute(model=model, sae=sae, site="double.img.out", block=0, tokens="image", features="1",
                         strength=1.0, mode="add", keep_error=True, start_percent=0.0, end_percent=1.0,
                         apply_to="both", strength_unit="× token norm")


def test_text_tokens_at_a_unet_site_are_refused(unet):
    family, model = unet
    with pytest.raises(ValueError, match=r"^tokens 'text': the UNet site up_blocks.1.attentions.0 has image positions only"):
        any_site.attach_site(model, TapSpec("up_blocks.1.attentions.0", 0, tokens="text"), lambda x, e: None)
