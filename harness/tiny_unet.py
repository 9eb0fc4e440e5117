"""Tiny SD1.5 / SDXL UNets built the way ComfyUI builds them (``comfy.supported_models.SD15`` / ``SDXL`` with
a small ``unet_config`` of the shape ``comfy/model_detection.py`` produces), random weights, on the CPU."""
from __future__ import annotations

import math

import torch

# Two levels, one res block each, spatial transformers at both levels and in the middle.
_TINY_UNET = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
                  in_channels=4, model_channels=32, num_res_blocks=[1, 1], channel_mult=[1, 2],
                  transformer_depth=[1, 1], transformer_depth_middle=1, transformer_depth_output=[1, 1, 1, 1],
                  use_temporal_attention=False, use_temporal_resblock=False)
TINY_UNET_CONFIGS = {
    "SD15": dict(_TINY_UNET, adm_in_channels=None, use_linear_in_transformer=False, context_dim=32),
    "SDXL": dict(_TINY_UNET, num_classes="sequential", adm_in_channels=2816, use_linear_in_transformer=True,
                 context_dim=32),
}
TINY_UNET_CONFIGS["SD20"] = dict(TINY_UNET_CONFIGS["SD15"], use_linear_in_transformer=True)  # a family no site table covers


def build_tiny_unet(family: str = "SDXL", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A ``ModelPatcher`` around a tiny UNet of ``family`` ("SD15", "SDXL"; "SD20": a family the site nodes
    refuse), weights drawn from ``seed``."""
    import comfy.supported_models

    model_config = getattr(comfy.supported_models, family)(dict(TINY_UNET_CONFIGS[family], dtype=dtype))
    model_config.unet_config["num_head_channels"] = 16  # both families: heads of 16 channels
    model_config.unet_config["num_heads"] = -1
    return tiny_patcher(model_config, seed, dtype)


def tiny_patcher(model_config, seed: int, dtype: torch.dtype):
    """The CPU ``ModelPatcher`` ComfyUI would make of ``model_config`` (a ``comfy.supported_models`` config), with
    random weights from ``seed`` (``init_weights``) instead of a checkpoint's."""
    import comfy.model_patcher

    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({}, device=torch.device("cpu"))
    init_weights(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


def init_weights(diffusion_model: torch.nn.Module, seed: int):
    """Random weights drawn from ``seed`` that keep every block's activations O(1): fan-in scaled matrices,
    norm gains (``weight`` / ``scale``) 1, small biases."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in diffusion_model.named_parameters():
            if param.ndim >= 2:
                std = 1.0 / math.sqrt(math.prod(param.shape[1:]))
                param.copy_((torch.randn(param.shape, generator=generator) * std).to(param.dtype))
            elif name.endswith(("weight", "scale")):
                param.fill_(1.0)  # GroupNorm / LayerNorm / RMSNorm gains
            else:
                param.copy_((torch.randn(param.shape, generator=generator) * 0.02).to(param.dtype))


def tiny_unet_conditioning(family: str, seed: int) -> list:
    """A CONDITIONING for the tiny UNet of ``family``: 6 random context tokens, SDXL's pooled vector too."""
    g = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, 1280, generator=g)} if family == "SDXL" else {}
    return [[torch.randn(1, 6, TINY_UNET_CONFIGS[family]["context_dim"], generator=g), extra]]


def build_tiny_vae(latent_channels: int = 4, seed: int = 0):
    """A ``comfy.sd.VAE`` in TAESD's layout (ComfyUI detects it by ``taesd_decoder.1.weight``) with random
    fan-in-scaled weights: SD1.5/SDXL's 4 latent channels at 1/8 of the pixels, for image-to-latent tests."""
    import comfy.sd
    import comfy.taesd.taesd

    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for name, value in comfy.taesd.taesd.TAESD(latent_channels=latent_channels).state_dict().items():
        if value.ndim >= 2:
            std = 1.0 / math.sqrt(math.prod(value.shape[1:]))
            state_dict[name] = torch.randn(value.shape, generator=generator) * std
        else:  # conv biases 0; vae_scale 1, vae_shift 0
            state_dict[name] = torch.ones(()) if name == "vae_scale" else torch.zeros(value.shape)
    return comfy.sd.VAE(sd=state_dict)
