"""Sample Tiny World through ComfyUI and read what it drew: shared by the main job, the benchmark and the tests."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STEPS = 20
CFG = 1.0


def pack(submodule: str):
    """A module of the pack under the name this process loaded it: ``comfyui_sae_steering`` (tests, bench,
    training) or the name ComfyUI's custom-node loader gave it (the headless main job)."""
    import importlib
    import sys

    if "comfyui_sae_steering" in sys.modules:
        return importlib.import_module(f"comfyui_sae_steering.{submodule}")
    from .headless import pack_module
    return pack_module(submodule)


@dataclass
class Drawn:
    prompt: str
    seed: int
    image: np.ndarray  # uint8 [64, 64, 3]


def encode(clip, prompt: str):
    return clip.encode_from_tokens_scheduled(clip.tokenize(prompt))


def sample_images(model, clip, vae, prompt: str, seeds, steps: int = STEPS, cfg: float = CFG,
                  sampler_name: str = "euler", scheduler: str = "simple") -> list[Drawn]:
    """One real ``comfy.sample.sample`` per seed (as KSampler runs it), decoded by ComfyUI's VAE."""
    import comfy.sample

    IMAGE_SIZE = pack("nodes.tiny_world.world").IMAGE_SIZE  # noqa: N806

    drawn = []
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        positive, negative = encode(clip, prompt), encode(clip, "")
    for seed in seeds:
        latent = torch.zeros(1, 16, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
        noise = comfy.sample.prepare_noise(latent, seed)
        with torch.inference_mode():
            samples = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative,
                                          latent, disable_pbar=True, seed=seed)
            pixels = vae.decode(samples)[0].clamp(0, 1)
        drawn.append(Drawn(prompt, seed, (pixels.numpy() * 255).round().astype(np.uint8)))
    return drawn


def accuracy(model, clip, vae, seeds, prompts=None, **kwargs) -> dict:
    """Colour and shape accuracy of what the model draws for each prompt, read by the project's classifier."""
    classify = pack("nodes.tiny_world.classify").classify
    world = pack("nodes.tiny_world.world")
    COLOURS, SHAPES, all_prompts = world.COLOURS, world.SHAPES, world.all_prompts  # noqa: N806

    colour_ok = shape_ok = total = 0
    per_prompt = {}
    for prompt in prompts or all_prompts():
        colour, shape = next(c for c in COLOURS if f" {c} " in f" {prompt} "), next(s for s in SHAPES if s in prompt)
        readings = [classify(d.image) for d in sample_images(model, clip, vae, prompt, seeds, **kwargs)]
        c_ok = sum(r.colour == colour for r in readings)
        s_ok = sum(r.shape == shape for r in readings)
        per_prompt[prompt] = (c_ok / len(readings), s_ok / len(readings))
        colour_ok, shape_ok, total = colour_ok + c_ok, shape_ok + s_ok, total + len(readings)
    return {"colour": colour_ok / total, "shape": shape_ok / total, "samples": total, "per_prompt": per_prompt}


def target_scale(model, clip, sae, prompt: str, batch: int = 4, steps: int = 8):
    """Measure Activation Scale (the node) at the SAE's own site, with the SAE, on ``prompt``: a prompt
    where the target feature fires, so that "× feature mean" has a unit. ``batch`` noise draws."""
    site, block = sae.hook.rsplit(".", 1)
    node = pack("nodes.measure.activation_scale_node").SAEActivationScale
    with torch.inference_mode():
        return node.execute(model=model, positive=encode(clip, prompt), latent={"samples": torch.zeros(batch, 16, 8, 8)},
                            site=site, block=int(block), steps=steps, seed=0, cfg=1.0, sampler_name="euler",
                            scheduler="simple", sae=sae).result


def steer(model, sae, scale, features: str, strength: float, mode: str = "add", keep_error: bool = True,
          start_percent: float = 0.0, end_percent: float = 1.0):
    """SAE Steer FLUX (the node) at the SAE's own site, image tokens, strength in × feature mean."""
    site, block = sae.hook.rsplit(".", 1)
    node = pack("nodes.steer.flux_steer_node").SAEFluxSteer
    return node.execute(model=model, sae=sae, site=site, block=int(block), tokens="image", features=features,
                        strength=float(strength), mode=mode, keep_error=keep_error, start_percent=start_percent,
                        end_percent=end_percent, apply_to="both", scale=scale,
                        strength_unit="× feature mean").result[0]


def score(baseline, drawn, attribute: str, target: str, stays: str) -> dict:
    """Over samples paired by seed (lists of ``Drawn``): success (the ``attribute`` reads as ``target``), kept
    (``stays``: the shape, in place, ``classify.object_kept``; or the colour, as in the baseline) and outside
    (mean absolute pixel change, 0-255, on pixels outside the object in both images)."""
    classify_module = pack("nodes.tiny_world.classify")
    classify, object_kept = classify_module.classify, classify_module.object_kept

    success = kept = 0
    outside = []
    for before, after in zip(baseline, drawn):
        r0, r1 = classify(before.image), classify(after.image)
        got = {"colour": r1.colour, "shape": r1.shape}
        success += got[attribute] == target
        kept += object_kept(r0, r1) if stays == "shape" else r1.colour == r0.colour
        background = ~(r0.mask | r1.mask)
        diff = np.abs(before.image.astype(np.float32) - after.image.astype(np.float32)).mean(-1)
        outside.append(float(diff[background].mean()) if background.any() else 255.0)
    return {"success": success / len(drawn), "kept": kept / len(drawn), "outside": float(np.mean(outside))}
