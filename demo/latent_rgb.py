"""Latent to RGB without a VAE: ComfyUI's own preview projection (``Latent2RGBPreviewer``).

Each latent pixel becomes ``latent_rgb_factors @ latent + bias``, mapped from [-1, 1] to [0, 1],
as ComfyUI's sampler previews do; each latent pixel is then shown as an ``upscale``² block. This is
an honest, cheap rendering of the latent, not a VAE decode: colours are right on average, detail
finer than one latent pixel (8 image pixels for FLUX) does not exist in it.
"""
from __future__ import annotations

import torch


def latent_to_rgb(latent: torch.Tensor, latent_format, upscale: int = 8) -> torch.Tensor:
    """LATENT samples [B, C, h, w] (as a sampler returns them) -> IMAGE [B, h·upscale, w·upscale, 3] in [0, 1]."""
    if latent.ndim != 4:
        raise ValueError(f"latent must be [batch, channels, height, width], got {tuple(latent.shape)}")
    factors = getattr(latent_format, "latent_rgb_factors", None)
    if factors is None:
        raise ValueError(f"{type(latent_format).__name__} has no latent_rgb_factors to preview with")
    factors = torch.tensor(factors, dtype=torch.float32)  # [C, 3]
    if factors.shape[0] != latent.shape[1]:
        raise ValueError(f"latent has {latent.shape[1]} channels, {type(latent_format).__name__}'s "
                         f"latent_rgb_factors expect {factors.shape[0]}")
    bias = getattr(latent_format, "latent_rgb_factors_bias", None)
    bias = torch.zeros(3) if bias is None else torch.tensor(bias, dtype=torch.float32)
    # the sampler hands back process_out(x); previews project the model-space latent x
    model_space = latent_format.process_in(latent.detach().to(torch.float32).cpu())
    rgb = torch.einsum("bchw,cr->bhwr", model_space, factors) + bias
    image = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)
    return image.repeat_interleave(upscale, dim=1).repeat_interleave(upscale, dim=2)
