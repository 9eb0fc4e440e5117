"""Latent to RGB without a VAE: ComfyUI's own sampler-preview projection (``Latent2RGBPreviewer``).

Each latent pixel becomes ``latent_rgb_factors · latent + bias``, mapped from [-1, 1] to [0, 1]
(what ComfyUI's previews show while sampling), then drawn as an ``upscale``² block. An honest,
cheap rendering of the latent, not a VAE decode: colours are right on average, and detail finer
than one latent pixel (8 image pixels for FLUX) does not exist in it.
"""
from __future__ import annotations

import numpy as np
import torch


def latent_to_rgb(latent: torch.Tensor, latent_format, upscale: int = 8) -> torch.Tensor:
    """LATENT samples [B, C, h, w] (as a sampler returns them) -> IMAGE [B, h·upscale, w·upscale, 3] in [0, 1]."""
    import latent_preview

    if latent.ndim != 4:
        raise ValueError(f"latent must be [batch, channels, height, width], got {tuple(latent.shape)}")
    factors = getattr(latent_format, "latent_rgb_factors", None)
    if factors is None:
        raise ValueError(f"{type(latent_format).__name__} has no latent_rgb_factors to preview with")
    if len(factors) != latent.shape[1]:
        raise ValueError(f"latent has {latent.shape[1]} channels, {type(latent_format).__name__}'s "
                         f"latent_rgb_factors expect {len(factors)}")
    previewer = latent_preview.Latent2RGBPreviewer(factors, getattr(latent_format, "latent_rgb_factors_bias", None))
    # the sampler hands back process_out(x); previews project the model-space latent x
    model_space = latent_format.process_in(latent.detach().to(torch.float32).cpu())
    images = [np.asarray(previewer.decode_latent_to_preview(model_space[i:i + 1])) for i in range(latent.shape[0])]
    image = torch.from_numpy(np.stack(images)).to(torch.float32) / 255.0
    return image.repeat_interleave(upscale, dim=1).repeat_interleave(upscale, dim=2)
