"""One real sampling for the nodes that record through taps: as KSampler runs it, with ComfyUI's progress bar."""
from __future__ import annotations

import torch

import comfy.sample
import comfy.samplers
import comfy.utils
from comfy_api.latest import io


def sampling_inputs(steps: int = 4, steps_tooltip: str | None = None, max_steps: int = 10000,
                    seed_tooltip: str | None = None, control_after_generate: bool = False) -> list:
    """The steps/seed/cfg/sampler/scheduler inputs of every node that samples a few steps (``run_sampling``)."""
    seed_options = {"control_after_generate": True} if control_after_generate else {}
    return [
        io.Int.Input("steps", default=steps, min=1, max=max_steps, tooltip=steps_tooltip),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip=seed_tooltip, **seed_options),
        io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01),
        io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler"),
        io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="simple"),
    ]


def run_sampling(model, positive, negative, latent, steps, seed, cfg, sampler_name, scheduler,
                 progress: comfy.utils.ProgressBar | None = None, done: int = 0):
    """``comfy.sample.sample`` of ``latent`` (denoise 1). Without ``negative`` the positive prompt serves
    as the negative too (at cfg > 1 the guidance then changes nothing). ``progress``: a bar shared by
    several samplings of one node, ``done`` the steps it counted before this one; else a bar of ``steps``."""
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    bar = comfy.utils.ProgressBar(steps) if progress is None else progress
    return comfy.sample.sample(
        model, noise, steps, cfg, sampler_name, scheduler, positive, positive if negative is None else negative,
        latent_image, noise_mask=latent.get("noise_mask"), seed=seed,
        callback=lambda step, x0, x, total: bar.update_absolute(done + step + 1),
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED)


def run_once_at(model, positive, latent_image: torch.Tensor, sigma: float, seed: int):
    """Noise ``latent_image`` (VAE space) to ``sigma`` with the seed's noise and take one euler step to 0: the
    model runs exactly once, at ``sigma``, on the noised image (cfg 1: the positive pass only)."""
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent_image)
    noise = comfy.sample.prepare_noise(latent_image, seed)
    sigmas = torch.tensor([float(sigma), 0.0])
    sampler = comfy.samplers.sampler_object("euler")
    return comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, positive, positive, latent_image, seed=seed,
                                      disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED)
