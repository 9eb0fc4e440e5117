"""A tiny FLUX-architecture model, built exactly as ComfyUI builds FLUX, for the tests, the demo and the
benchmarks (which build FLUX's full width from the same code).

ComfyUI's model detection fixes FLUX at 24 heads, so a file of this model cannot go through
``UNETLoader``; it is built in code instead: ``comfy.supported_models.Flux`` with a small
``unet_config``, deterministic weights, wrapped in a real ``ModelPatcher``.
"""
from __future__ import annotations

import math

import torch

TINY_FLUX_CONFIG = dict(
    image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=64,
    hidden_size=64, mlp_ratio=4.0, num_heads=4, depth=2, depth_single_blocks=2, axes_dim=[4, 6, 6],
    theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, txt_ids_dims=[],
)
# The demo's FLUX: twice the test bench's width, same block layout (head dim 32 = sum of axes_dim)
DEMO_FLUX = dict(hidden_size=128, num_heads=4, axes_dim=[8, 12, 12], depth=2, depth_single_blocks=2)
# FLUX.1-dev as ComfyUI v0.8.0's model detection configures it (comfy/model_detection.py)
FLUX_DEV_CONFIG = {**TINY_FLUX_CONFIG, **dict(context_in_dim=4096, hidden_size=3072, num_heads=24, depth=19,
                                              depth_single_blocks=38, axes_dim=[16, 56, 56])}


def build_tiny_flux(seed: int = 0, dtype: torch.dtype = torch.float32, device="cpu", **overrides):
    """A ``ModelPatcher`` around a small FLUX on ``device``, weights drawn from ``seed`` (then cast to ``dtype``).

    ``overrides`` change the config (the benchmark builds FLUX width this way); on another device the
    weights are drawn there (same seed, other numbers), so a full-size FLUX needs no host copy."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    config = {**TINY_FLUX_CONFIG, **overrides}
    model_config = comfy.supported_models.Flux(config)
    model_config.set_inference_dtype(dtype, None)
    device = torch.device(device)
    model = model_config.get_model({}, device=device)
    generator = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.diffusion_model.named_parameters():
            if param.ndim >= 2:
                # fan-in scaling keeps every block's activations O(1), like a trained network
                std = 1.0 / math.sqrt(param.shape[-1])
                param.copy_((torch.randn(param.shape, generator=generator, device=device) * std).to(param.dtype))
            elif name.endswith("scale"):
                param.fill_(1.0)  # RMSNorm gains
            else:
                param.copy_((torch.randn(param.shape, generator=generator, device=device) * 0.02).to(param.dtype))
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def tiny_conditioning(seed: int = 0, text_tokens: int = 8, context_dim: int = 64, guidance: float = 3.5,
                      batch: int = 1):
    """CONDITIONING as a FLUX text encoder would give it: tokens, CLIP-L pooled vector, guidance."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, text_tokens, context_dim, generator=generator)
    pooled = torch.randn(batch, 768, generator=generator)
    return [[tokens, {"pooled_output": pooled, "guidance": guidance}]]


def empty_latent(width: int = 32, height: int = 32, batch: int = 1) -> torch.Tensor:
    """What ``EmptySD3LatentImage`` gives for FLUX: 16 channels at 1/8 of the pixel size."""
    return torch.zeros(batch, 16, height // 8, width // 8)


def sample(model, positive, negative=None, latent=None, steps: int = 3, cfg: float = 1.0, seed: int = 0,
           sampler_name: str = "euler", scheduler: str = "simple", denoise: float = 1.0, callback=None):
    """One real ``comfy.sample.sample`` run, as ``KSampler`` does it; ``callback(step, x0, x, total)`` per step."""
    import comfy.sample

    latent = empty_latent() if latent is None else latent
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, seed)
    negative = positive if negative is None else negative
    return comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                               denoise=denoise, disable_pbar=True, seed=seed,
                               callback=callback)
