"""Family detection from ComfyUI's own model configs, and the one-line error a site node gives a MODEL of
a family it cannot hook (tiny SD1.5 / SDXL UNets built as ComfyUI builds them)."""
from __future__ import annotations

import pytest

import comfy.supported_models

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.harness.tiny_unet import build_tiny_unet
from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
from comfyui_sae_steering.nodes.sites.model_families import config_family, model_family
from comfyui_sae_steering.nodes.sites.tap import TapSpec, attach_tap

EXPECTED = {
    "Flux": "FLUX.1", "FluxSchnell": "FLUX.1", "FluxInpaint": "FLUX.1", "Flux2": "FLUX.2", "Chroma": "Chroma",
    "SD3": "SD3/3.5", "QwenImage": "Qwen-Image", "Lumina2": "Lumina2", "ZImage": "Z-Image",
    "WAN21_T2V": "Wan 2.1", "WAN21_I2V": "Wan 2.1", "WAN21_Vace": "Wan 2.1", "WAN22_T2V": "Wan 2.2",
    "WAN22_Camera": "Wan 2.2", "WAN22_S2V": "Wan 2.2", "WAN22_Animate": "Wan 2.2",
    "SDXL": "SDXL", "SSD1B": "SDXL", "SDXL_instructpix2pix": "SDXL", "SDXLRefiner": "SDXL Refiner",
    "SD15": "SD1.5", "SD15_instructpix2pix": "SD1.5", "SD20": "SD2.x",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_family_of_comfyui_configs(name):
    cls = getattr(comfy.supported_models, name)
    assert config_family(cls(dict(cls.unet_config))) == EXPECTED[name]


def test_every_comfyui_config_has_a_family():
    missing = [cls.__name__ for cls in comfy.supported_models.models if config_family(cls(dict(cls.unet_config))) is None]
    assert missing == []


def test_tiny_models_are_named(tiny_flux):
    assert model_family(tiny_flux) == "FLUX.1"
    assert model_family(build_tiny_unet("SDXL")) == "SDXL"
    assert model_family(build_tiny_unet("SD15")) == "SD1.5"


@pytest.mark.parametrize("family,name", [("SDXL", "SDXL"), ("SD15", "SD1.5")])
def test_site_nodes_name_an_unsupported_family(family, name):
    model = build_tiny_unet(family)
    sae = random_sae(d_in=64, d_sae=256, k=8, seed=3)
    message = (rf"^this node's sites are not available for this model \(family: {name}\); supported model families: "
               r"FLUX.1, FLUX.2, Chroma$")
    with pytest.raises(ValueError, match=message):
        SAEFluxSteer.execute(model=model, sae=sae, site="double.img.out", block=0, tokens="image", features="3",
                             strength=1.0, mode="add", keep_error=True, start_percent=0.0, end_percent=1.0,
                             apply_to="both")
    with pytest.raises(ValueError, match=message):  # the mechanism under every site node (scale, scan, harvest)
        attach_tap(model, TapSpec("single.out", 0), lambda x, event: None)


@pytest.mark.parametrize("name,expected", [("Flux2", 16), ("WAN22_T2V", 16), ("WAN21_T2V", 8), ("SD3", 8),
                                           ("Chroma", 8), ("QwenImage", 8)])
def test_latent_scale_is_what_comfyuis_empty_latent_nodes_use(tiny_dit, tiny_flux, name, expected):
    """EmptyFlux2LatentImage and Wan 2.2's latent node divide the image by 16, every other family's by 8."""
    from comfyui_sae_steering.nodes.sites.model_families import latent_scale

    assert latent_scale(tiny_dit(name)) == expected
    assert latent_scale(tiny_flux) == latent_scale(build_tiny_unet("SDXL", seed=0)) == 8
