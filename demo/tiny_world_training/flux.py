"""Train Tiny World's FLUX (ComfyUI's own ``comfy.ldm.flux`` class) and text encoder with rectified flow.

ComfyUI's FLUX is written for inference: its blocks add into the residual stream in place
(``img += ...``), which autograd rejects, and comfy_kitchen's ``apply_rope`` has no backward. Training
runs ComfyUI's own forward with two changes that compute the same numbers:
- the inputs are an ``OutOfPlace`` tensor, whose ``+=`` makes a new tensor (every tensor computed
  from it is one too), so nothing saved for the backward pass is overwritten;
- ``apply_rope`` is the textbook rotation, differentiable.
Sampling afterwards uses ComfyUI's unmodified code (a test checks both forwards agree).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from .step import optimise


class OutOfPlace(torch.Tensor):
    """A tensor whose in-place add is out of place: ``x += y`` rebinds ``x`` to ``x + y``."""

    def __iadd__(self, other):
        return self + other


def rope_rotate(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    x_ = x.to(dtype=freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    out = freqs_cis[..., 0] * x_[..., 0] + freqs_cis[..., 1] * x_[..., 1]
    return out.reshape(*x.shape).type_as(x)


def differentiable_rope(xq, xk, freqs_cis):
    return rope_rotate(xq, freqs_cis), rope_rotate(xk, freqs_cis)


@contextlib.contextmanager
def trainable_flux():
    """Inside: ComfyUI's FLUX attention uses a differentiable rope (restored on exit)."""
    import comfy.ldm.flux.math as flux_math

    original = flux_math.apply_rope
    flux_math.apply_rope = differentiable_rope
    try:
        yield
    finally:
        flux_math.apply_rope = original


def flux_forward(diffusion_model, x, sigma, cond, pooled):
    """ComfyUI's FLUX forward on plain tensors; call inside ``trainable_flux()`` for gradients."""
    out = diffusion_model(x.as_subclass(OutOfPlace), sigma, cond.as_subclass(OutOfPlace), y=pooled,
                          transformer_options={})
    return out.as_subclass(torch.Tensor)


def sample_sigmas(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Half logit-normal (SD3's choice, dense mid-schedule), half uniform (every sigma seen)."""
    logit = torch.sigmoid(torch.randn(batch, generator=generator))
    uniform = torch.rand(batch, generator=generator)
    pick = torch.rand(batch, generator=generator) < 0.5
    return torch.where(pick, logit, uniform).clamp(1e-3, 1.0)


def train_flux(flux_patcher, text_model, latents: torch.Tensor, token_ids: torch.Tensor, steps: int, batch: int,
               seed: int, lr: float = 1e-3, drop_text: float = 0.1, progress=None) -> dict:
    """Rectified flow, as ComfyUI samples FLUX: x_sigma = (1 - sigma) x0 + sigma noise, the model predicts
    noise - x0 (ComfyUI's ``CONST`` turns that back into x0). ``latents`` are already in the model's space
    (after ``Flux.process_in``). ``drop_text`` of the prompts are empty, so CFG has an unconditional model."""
    diffusion_model = flux_patcher.model.diffusion_model
    diffusion_model.train()
    params = list(diffusion_model.parameters()) + list(text_model.parameters())
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps))))
    generator = torch.Generator().manual_seed(seed)
    empty = torch.zeros_like(token_ids[:1])
    start, losses = time.perf_counter(), []
    with trainable_flux(), torch.enable_grad():
        for step in range(steps):
            pick = torch.randint(0, latents.shape[0], (batch,), generator=generator)
            x0, ids = latents[pick], token_ids[pick].clone()
            ids[torch.rand(batch, generator=generator) < drop_text] = empty
            noise = torch.randn(x0.shape, generator=generator)
            sigma = sample_sigmas(batch, generator)
            s = sigma.view(-1, 1, 1, 1)
            x_t = (1 - s) * x0 + s * noise
            cond, pooled = text_model.encode_ids(ids)
            predicted = flux_forward(diffusion_model, x_t, sigma, cond, pooled)
            loss = F.mse_loss(predicted, noise - x0)
            losses.append(optimise(loss, params, optimiser, schedule))
            if progress:
                progress(step, steps, f"flux loss {np.mean(losses[-50:]):.4f}")
    for p in params:
        p.requires_grad_(False)
    diffusion_model.eval()
    return {"steps": steps, "batch": batch, "seed": seed, "lr": lr, "final_loss": float(np.mean(losses[-100:])),
            "seconds": time.perf_counter() - start}
