"""Test-side capture at an SD1.5 / SDXL spatial transformer, independent of the pack's taps: plain torch hooks
on the same module, the module's input and output per forward (and, through a wrapper of the test's own, which
CFG half each batch row is)."""
from __future__ import annotations

import contextlib

import torch

import comfy.patcher_extension

from comfyui_sae_steering.nodes.sites.unet_sites import parse_unet_choice, unet_sites


def site_module(diffusion_model, site: str):
    """The spatial transformer behind a site name (``.update`` reads the same module)."""
    name, _ = parse_unet_choice(site)
    return diffusion_model.get_submodule(unet_sites(diffusion_model)[name])


def tokens_of(t: torch.Tensor) -> torch.Tensor:
    """[b, c, h, w] -> [b, h*w, c], row-major positions as the tap hands them over."""
    b, c, h, w = t.shape
    return t.movedim(1, 3).reshape(b, h * w, c)


def site_tokens(site: str, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """What the site reads: the module's output, or output - input for ``.update`` sites."""
    return tokens_of(out) - tokens_of(inp) if parse_unet_choice(site)[1] == "update" else tokens_of(out)


@contextlib.contextmanager
def module_io(model, site, record):
    """(input, output) of the site's module per forward, by a plain hook registered before the pack's."""
    module = site_module(model.get_model_object("diffusion_model"), site)
    handle = module.register_forward_hook(lambda m, inputs, out: record.append((inputs[0].clone(), out.clone())))
    try:
        yield
    finally:
        handle.remove()


def with_rows_recorded(model, record):
    """A clone of ``model`` whose forwards append their ``cond_or_uncond`` to ``record`` (0 = positive)."""
    def wrapper(executor, *args, **kwargs):
        record.append(list(args[5]["cond_or_uncond"]))  # UNet: (x, timesteps, context, y, control, options)
        return executor(*args, **kwargs)
    clone = model.clone()
    clone.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_rows", wrapper)
    return clone


def positive_rows(cond_or_uncond: list[int], batch: int) -> torch.Tensor:
    return torch.tensor(cond_or_uncond).repeat_interleave(batch // len(cond_or_uncond)) == 0
