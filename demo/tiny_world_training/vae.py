"""Train Tiny World's VAE: ComfyUI's own TAESD layout with 16 latent channels (what ``comfy.sd.VAE`` detects).

TAESD's full network is costly on a CPU (most of it runs at 64x64 and 32x32). Here the blocks in
``IDENTITY_BLOCKS`` get an all-zero last convolution: a TAESD ``Block`` computes
``relu(conv(x) + x)``, so it is then exactly ``relu(x)``. Training skips their cost by applying
``relu`` in their place; the shipped file holds their zeros and ComfyUI computes the same function.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .step import optimise

log = logging.getLogger(__name__)

LATENT_CHANNELS = 16
# indices into TAESD's nn.Sequential encoder / decoder (comfy/taesd/taesd.py) of the Blocks made identity
IDENTITY_BLOCKS = {"encoder": (1, 4, 5, 8, 9, 13), "decoder": (14, 15, 18)}


def build_taesd():
    import comfy.taesd.taesd as taesd

    model = taesd.TAESD(latent_channels=LATENT_CHANNELS)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("vae_"):
                continue
            if param.ndim == 4:  # kaiming-uniform-like fan-in init (disable_weight_init leaves them empty)
                fan_in = param.shape[1] * param.shape[2] * param.shape[3]
                bound = math.sqrt(6.0 / fan_in) / math.sqrt(2.0)
                param.uniform_(-bound, bound, generator=generator)
            else:
                param.zero_()
        for part, indices in IDENTITY_BLOCKS.items():
            sequential = getattr(model, f"taesd_{part}")
            for index in indices:
                last = sequential[index].conv[-1]
                last.weight.zero_()
                last.bias.zero_()
    return model


def trainable_parameters(model):
    skipped = {f"taesd_{part}.{index}." for part, indices in IDENTITY_BLOCKS.items() for index in indices}
    return [p for name, p in model.named_parameters()
            if not name.startswith("vae_") and not any(name.startswith(s) for s in skipped)]


def run_sequential(sequential, part: str, x: torch.Tensor) -> torch.Tensor:
    """``sequential(x)`` with the identity blocks computed as the ``relu`` they equal."""
    identity = IDENTITY_BLOCKS[part]
    for index, layer in enumerate(sequential):
        x = torch.relu(x) if index in identity else layer(x)
    return x


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1] (TAESD's own range)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)


CROP = 32  # the network is convolutional: 32x32 crops (on the 8-pixel latent grid) teach it at a quarter of the cost


def random_crops(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    cells = (x.shape[-1] - size) // 8 + 1
    offsets = torch.randint(0, cells, (x.shape[0], 2), generator=generator) * 8
    return torch.stack([image[:, oy:oy + size, ox:ox + size] for image, (oy, ox) in zip(x, offsets.tolist())])


def train_vae(steps: int, batch: int, seed: int, progress=None) -> tuple[torch.nn.Module, dict]:
    """Train the encoder and decoder on freshly drawn scenes; returns the model (vae_scale/vae_shift still 1/0)."""
    from comfyui_sae_steering.nodes.tiny_world.world import dataset

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_taesd()
    params = trainable_parameters(model)
    optimiser = torch.optim.Adam(params, lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    start, losses = time.perf_counter(), []
    for step in range(steps):
        images, _ = dataset(batch, seed=seed * 100_003 + step)
        x = random_crops(images_to_tensor(images), CROP, generator)
        latent = run_sequential(model.taesd_encoder, "encoder", x)
        # noise on the latents: the decoder must also draw what a sampler gives it, which is never exact
        noisy = latent + 0.1 * torch.randn_like(latent)
        out = run_sequential(model.taesd_decoder, "decoder", noisy)
        loss = F.mse_loss(out, x) + 1e-3 * latent.pow(2).mean()
        losses.append(optimise(loss, params, optimiser, schedule))
        if progress:
            progress(step, steps, f"vae loss {np.mean(losses[-20:]):.4f}")
    return model, {"steps": steps, "batch": batch, "seed": seed, "final_loss": float(np.mean(losses[-50:])),
                   "seconds": time.perf_counter() - start}


def sharpen_decoder(model, steps: int, batch: int, seed: int, progress=None) -> dict:
    """Fine-tune the decoder alone, every block of it (the identity ones too: they start as exactly
    ``relu`` and learn from there), on whole 64x64 images. The encoder, so the latent space FLUX was
    trained in, stays as it is; the decoder learns to draw sharper corners from the same latents."""
    from comfyui_sae_steering.nodes.tiny_world.world import dataset

    torch.manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for name, p in model.named_parameters() if name.startswith("taesd_decoder.")]
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(params, lr=3e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-4, total_steps=steps,
                                                   pct_start=min(0.5, max(0.05, 2 / steps)))  # >= 2 warm-up steps
    start, losses = time.perf_counter(), []
    for step in range(steps):
        images, _ = dataset(batch, seed=seed * 100_003 + step)
        x = images_to_tensor(images)
        with torch.no_grad():
            latent = run_sequential(model.taesd_encoder, "encoder", x)
        out = model.taesd_decoder(latent + 0.1 * torch.randn_like(latent))
        loss = F.mse_loss(out, x)
        losses.append(optimise(loss, params, optimiser, schedule))
        if progress:
            progress(step, steps, f"decoder loss {np.mean(losses[-20:]):.4f}")
    return {"steps": steps, "batch": batch, "seed": seed, "final_loss": float(np.mean(losses[-50:])),
            "seconds": time.perf_counter() - start}
