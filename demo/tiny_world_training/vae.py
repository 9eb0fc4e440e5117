"""Train Tiny World's VAE: ComfyUI's own TAESD layout with 16 latent channels (what ``comfy.sd.VAE`` detects).

The latent is factored (``train_factored_vae``): 12 channels hold the object's shape and place, the same
whatever its colour, and 4 hold its colour as one code, the same at every latent pixel.

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


# The factored latent: channels [0, SHAPE_CHANNELS) hold where the object is and its outline, the same
# whatever its colour; the rest hold the colour as one code, the same at every latent pixel. Colour and
# shape then live in different latent channels: where FLUX puts the object barely depends on the colour
# word, so a colour edit can keep it in place (measured in docs/tiny_world.md).
SHAPE_CHANNELS = 12
COLOUR_CODE_SCALE = 1.5


def colour_codes() -> torch.Tensor:
    """[colours, LATENT_CHANNELS - SHAPE_CHANNELS]: each colour's code, zero mean over the colours."""
    from comfyui_sae_steering.nodes.tiny_world.world import COLOURS

    eye = torch.eye(LATENT_CHANNELS - SHAPE_CHANNELS)[: len(COLOURS)]
    return COLOUR_CODE_SCALE * (eye - eye.mean(0, keepdim=True))


def recoloured(scenes, rng: np.random.Generator):
    """The same scenes (shape, position, size) in another colour each."""
    import dataclasses

    from comfyui_sae_steering.nodes.tiny_world.world import COLOURS, render

    names = list(COLOURS)
    others = [dataclasses.replace(s, colour=names[(names.index(s.colour) + 1 + rng.integers(len(names) - 1)) % len(names)])
              for s in scenes]
    return np.stack([render(s) for s in others]), others


def train_factored_vae(steps: int, batch: int, seed: int, progress=None) -> tuple[torch.nn.Module, dict]:
    """Encoder and decoder on whole 64x64 images (the colour code must see the whole object from every
    latent pixel). Losses: reconstruction; the colour channels regress the scene colour's code at every
    pixel; the shape channels of a scene and of the same scene in another colour agree."""
    from comfyui_sae_steering.nodes.tiny_world.world import COLOURS, dataset

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_taesd()
    params = trainable_parameters(model)
    optimiser = torch.optim.Adam(params, lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    codes, names = colour_codes(), list(COLOURS)
    start, losses = time.perf_counter(), []
    for step in range(steps):
        images, scenes = dataset(batch, seed=seed * 100_003 + step)
        other_images, other_scenes = recoloured(scenes, rng)
        x = images_to_tensor(np.concatenate([images, other_images]))
        target_code = codes[[names.index(s.colour) for s in [*scenes, *other_scenes]]][:, :, None, None]
        latent = run_sequential(model.taesd_encoder, "encoder", x)
        shape, code = latent[:, :SHAPE_CHANNELS], latent[:, SHAPE_CHANNELS:]
        # the decoder reads the true code half the time, so it draws whatever the code says
        teacher = torch.rand(x.shape[0], 1, 1, 1) < 0.5
        code_in = torch.where(teacher, target_code.expand_as(code), code)
        noisy = torch.cat([shape, code_in], 1) + 0.1 * torch.randn_like(latent)
        out = run_sequential(model.taesd_decoder, "decoder", noisy)
        code_loss = (code - target_code).pow(2).mean()
        invariance = (shape[:batch] - shape[batch:]).pow(2).mean()
        loss = F.mse_loss(out, x) + code_loss + invariance + 1e-3 * shape.pow(2).mean()
        losses.append(optimise(loss, params, optimiser, schedule))
        if progress:
            progress(step, steps, f"vae loss {np.mean(losses[-20:]):.4f} code {float(code_loss):.4f} "
                                  f"invariance {float(invariance):.4f}")
    return model, {"steps": steps, "batch": batch, "seed": seed, "final_loss": float(np.mean(losses[-50:])),
                   "seconds": time.perf_counter() - start, "shape_channels": SHAPE_CHANNELS}


def match_code_spread(model, x: torch.Tensor) -> float:
    """Scale the colour channels to the shape channels' spread, exactly: the encoder's last convolution
    writes them scaled, the decoder's first convolution reads them scaled back. Otherwise the code (learnt
    at COLOUR_CODE_SCALE) would dominate the latent's one normalisation and FLUX would see the shape at a
    third of the colour's signal. Returns the factor."""
    with torch.no_grad():
        latent = model.taesd_encoder(x)
        factor = float(latent[:, :SHAPE_CHANNELS].std() / latent[:, SHAPE_CHANNELS:].std())
        last = model.taesd_encoder[-1]
        last.weight[SHAPE_CHANNELS:] *= factor
        last.bias[SHAPE_CHANNELS:] *= factor
        first = model.taesd_decoder[1]  # after TAESD's input Clamp (near-linear at these values)
        first.weight[:, SHAPE_CHANNELS:] /= factor
    return factor
