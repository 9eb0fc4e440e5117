"""Which model family a ComfyUI MODEL is, named from its ``model_config`` (``comfy/supported_models.py``).

The family decides which site table applies. Names are looked up along the config class's MRO, so
ComfyUI's subclasses (FluxSchnell, SSD1B, WAN22_Camera, ...) land in their family; FLUX.1 Kontext and
Krea are FLUX.1 checkpoints (the same ``Flux`` config). Where no config is known (a model built some
other way), the diffusion model's class name is reported instead.
"""
from __future__ import annotations

# supported_models class name -> family (v0.8.0); checked along the MRO, first match wins
_CONFIG_FAMILIES = {
    "Flux2": "FLUX.2",
    "ChromaRadiance": "Chroma Radiance",
    "Chroma": "Chroma",
    "Flux": "FLUX.1",
    "SD3": "SD3/3.5",
    "QwenImage": "Qwen-Image",
    "ZImage": "Z-Image",
    "Lumina2": "Lumina2",
    "WAN22_T2V": "Wan 2.2",
    "WAN22_Camera": "Wan 2.2",
    "WAN22_S2V": "Wan 2.2",
    "WAN22_Animate": "Wan 2.2",
    "WAN21_T2V": "Wan 2.1",
    "SDXLRefiner": "SDXL Refiner",
    "SDXL": "SDXL",
    "SD15": "SD1.5",
    "SD20": "SD2.x",
    "SVD_img2vid": "Stable Video Diffusion",
    "Stable_Cascade_C": "Stable Cascade",
    "AuraFlow": "AuraFlow",
    "PixArtAlpha": "PixArt",
    "HunyuanDiT": "HunyuanDiT",
    "HunyuanImage21": "HunyuanImage 2.1",
    "HunyuanVideo": "HunyuanVideo",
    "HiDream": "HiDream",
    "LTXV": "LTX-Video",
    "GenmoMochi": "Mochi",
    "CosmosT2V": "Cosmos",
    "CosmosT2IPredict2": "Cosmos Predict2",
    "Omnigen2": "OmniGen2",
    "Kandinsky5": "Kandinsky 5",
    "Stable_Zero123": "Stable Zero123",
    "StableAudio": "Stable Audio",
    "Hunyuan3Dv2": "Hunyuan3D 2",
    "Hunyuan3Dv2_1": "Hunyuan3D 2",
    "ACEStep": "ACE-Step",
}
# Families each site table hooks; the others get a clear error.
FLUX_FAMILIES = ("FLUX.1", "FLUX.2", "Chroma")  # flux_sites.py + tap.py: double_blocks / single_blocks
UNET_SITE_FAMILIES = ("SDXL", "SD1.5")  # unet_sites.py + unet_tap.py: spatial transformers
DIT_FAMILIES = ("SD3/3.5", "Qwen-Image", "Lumina2", "Z-Image", "Wan 2.1", "Wan 2.2")  # dit_sites.py + dit_tap.py
SITE_FAMILIES = FLUX_FAMILIES + UNET_SITE_FAMILIES + DIT_FAMILIES  # every family some site table hooks


def model_family(model) -> str | None:
    """The family of a ModelPatcher's model, or None when its config is not one of ComfyUI's known ones."""
    return config_family(getattr(getattr(model, "model", None), "model_config", None))


def config_family(config) -> str | None:
    """The family of a ``comfy.supported_models`` config object (None for None or an unknown class)."""
    return None if config is None else _by_class_name(config, _CONFIG_FAMILIES)


def _by_class_name(obj, table: dict):
    """``table``'s entry for the first class along ``obj``'s MRO it names (ComfyUI subclasses its configs)."""
    return next((table[cls.__name__] for cls in type(obj).__mro__ if cls.__name__ in table), None)


def describe_model(model) -> str:
    """The family, or the config / diffusion-model class name when the family is unknown (for errors)."""
    family = model_family(model)
    if family is not None:
        return family
    config = getattr(getattr(model, "model", None), "model_config", None)
    if config is not None:
        return f"{type(config).__name__} (unknown family)"
    return f"{type(model.get_model_object('diffusion_model')).__name__} (unknown family)"


def unsupported_family(model, families: tuple[str, ...] = SITE_FAMILIES) -> ValueError:
    """The one-line error for a MODEL a site node cannot hook, naming it and the ``families`` the node can."""
    return ValueError(f"this node's sites are not available for this model (family: {describe_model(model)}); "
                      f"supported model families: {', '.join(families)}")


# latent format class name -> image pixels per latent pixel, where not 8 (ComfyUI's Empty*Latent nodes agree:
# EmptyFlux2LatentImage and Wan 2.2's latent are 1/16 of the image); checked along the MRO
_LATENT_SCALES = {"Flux2": 16, "Wan22": 16}
LATENT_SCALE = 8  # SD1.5, SDXL, SD3, FLUX.1, Chroma, Qwen-Image, Lumina2 / Z-Image, Wan 2.1


def latent_scale(model) -> int:
    """Image pixels per latent pixel (each side) for a MODEL, read from its latent format."""
    return _by_class_name(model.get_model_object("latent_format"), _LATENT_SCALES) or LATENT_SCALE
