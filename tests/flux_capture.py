"""Test-side capture of FLUX site activations, independent of the pack's tap machinery.

``before``: what the site produced (plain torch hooks registered before sampling, or a forward hook
on the block), ``after``: what flowed on (an inner DIFFUSION_MODEL wrapper / a chained block
patch added after the pack's). Each entry is one forward: (cond_or_uncond, sigma, tensor).
"""
from __future__ import annotations

import contextlib

import torch

import comfy.patcher_extension

from comfyui_sae_steering.nodes.sites.flux_sites import SITES


def _module(diffusion_model, site: str, block: int):
    spec = SITES[site]
    blocks = diffusion_model.double_blocks if spec.block_type == "double" else diffusion_model.single_blocks
    return blocks[block], (blocks[block].get_submodule(spec.module) if spec.module else None)


class Capture:
    def __init__(self, site: str, block: int, hidden: int):
        self.site, self.block, self.hidden = site, block, hidden
        self.spec = SITES[site]
        self.before: list[torch.Tensor] = []
        self.after: list[torch.Tensor] = []
        self.forwards: list[tuple[list[int], float, int]] = []  # (cond_or_uncond, sigma, txt_len)

    def _grab(self, value):
        if self.spec.hook == "pre":
            return value[0][..., : self.hidden].detach().clone()
        if self.spec.hook == "block" and self.spec.block_type == "double":
            return value[0 if self.spec.stream == "img" else 1].detach().clone()
        return value.detach().clone()

    @contextlib.contextmanager
    def before_hooks(self, diffusion_model):
        """Plain hooks on the unpatched modules: they run before anything the pack registers."""
        block, module = _module(diffusion_model, self.site, self.block)
        if self.spec.hook == "pre":
            handle = module.register_forward_pre_hook(lambda m, inputs: self.before.append(self._grab(inputs)))
        else:
            target = block if self.spec.hook == "block" else module
            handle = target.register_forward_hook(lambda m, i, out: self.before.append(self._grab(out)))
        try:
            yield
        finally:
            handle.remove()

    def add_after(self, model):
        """On ``model`` (already patched): record what flows on after the pack's edit."""
        capture = self

        def wrapper(executor, x, timestep, context, *args, **kwargs):
            options = args[4]
            sigma = float(options["sigmas"].max())
            capture.forwards.append((list(options["cond_or_uncond"]), sigma, context.shape[1]))
            handle = None
            if capture.spec.hook != "block":
                _, module = _module(executor.class_obj, capture.site, capture.block)
                if capture.spec.hook == "pre":
                    handle = module.register_forward_pre_hook(
                        lambda m, inputs: capture.after.append(capture._grab(inputs)))
                else:
                    handle = module.register_forward_hook(lambda m, i, out: capture.after.append(capture._grab(out)))
            try:
                return executor(x, timestep, context, *args, **kwargs)
            finally:
                if handle is not None:
                    handle.remove()

        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_capture", wrapper)
        if self.spec.hook == "block":
            key = (f"{self.spec.block_type}_block", self.block)
            previous = model.model_options["transformer_options"].get("patches_replace", {}).get("dit", {}).get(key)

            def chained(args, extra):
                out = previous(args, extra) if previous else extra["original_block"](args)
                stream = "txt" if self.spec.stream == "txt" else "img"
                capture.after.append(out[stream].detach().clone())
                return out
            model.set_model_patch_replace(chained, "dit", key[0], key[1])
        return model


def popular_features(sae, activations, n=3):
    """Features that fire on some but not all tokens of these activations: edits that matter."""
    z = sae.encode(activations.reshape(-1, activations.shape[-1]).float())
    freq = (z > 0).float().mean(0)
    order = torch.argsort((freq - 0.3).abs())
    return [int(f) for f in order[:n] if 0 < freq[f] < 1]


def hooks_left(diffusion_model) -> list[str]:
    return [name for name, m in diffusion_model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
