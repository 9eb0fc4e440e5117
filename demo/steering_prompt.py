"""The demo's steering workflow in ComfyUI's API format (what ``POST /prompt`` takes).

Load SAE -> measure the activation scale at its site -> steer one feature with ``add where active``
in units of the measured feature mean -> sample; an unsteered branch samples the same noise beside it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SteeringSettings:
    sae_name: str
    site: str
    block: int
    feature: int
    strength: float  # in units of the feature's mean activation where active (the scale node measures it)
    width: int = 256
    height: int = 256
    steps: int = 8
    seed: int = 0
    model_seed: int = 0
    positive_seed: int = 1
    negative_seed: int = 2
    cfg: float = 1.0
    sampler_name: str = "euler"
    scheduler: str = "simple"
    upscale: int = 8


def _link(node_id: str, output: int = 0) -> list:
    return [node_id, output]


def steering_prompt(s: SteeringSettings) -> dict:
    """The API prompt. Its outputs, as in example workflow 1: SaveImage ``unsteered`` and ``steered``,
    the scale's report in a PreviewAny and its plot in a PreviewImage."""
    sampling = dict(seed=s.seed, steps=s.steps, cfg=s.cfg, sampler_name=s.sampler_name, scheduler=s.scheduler)
    prompt = {
        "model": {"class_type": "SAEDemoTinyFlux", "inputs": {"seed": s.model_seed}},
        "positive": {"class_type": "SAEDemoConditioning", "inputs": {"seed": s.positive_seed, "guidance": 3.5}},
        "negative": {"class_type": "SAEDemoConditioning", "inputs": {"seed": s.negative_seed, "guidance": 3.5}},
        "latent": {"class_type": "EmptySD3LatentImage",
                   "inputs": {"width": s.width, "height": s.height, "batch_size": 1}},
        "sae": {"class_type": "SAELoader", "inputs": {"sae_name": s.sae_name, "dtype": "auto"}},
        "scale": {"class_type": "SAEActivationScale", "inputs": {
            "model": _link("model"), "positive": _link("positive"), "negative": _link("negative"),
            "latent": _link("latent"), "site": s.site, "block": s.block, "sae": _link("sae"), **sampling}},
        "steer": {"class_type": "SAEFluxSteer", "inputs": {
            "model": _link("model"), "sae": _link("sae"), "site": s.site, "block": s.block, "tokens": "image",
            "features": str(s.feature), "strength": s.strength, "mode": "add where active", "keep_error": True,
            "start_percent": 0.0, "end_percent": 1.0, "apply_to": "positive",
            "scale": _link("scale"), "strength_unit": "× feature mean"}},
    }
    for branch, model in (("unsteered", "model"), ("steered", "steer")):
        prompt[f"sample_{branch}"] = {"class_type": "KSampler", "inputs": {
            "model": _link(model), "positive": _link("positive"), "negative": _link("negative"),
            "latent_image": _link("latent"), "denoise": 1.0, **sampling}}
        prompt[f"rgb_{branch}"] = {"class_type": "SAEDemoLatentToRGB", "inputs": {
            "model": _link("model"), "samples": _link(f"sample_{branch}"), "upscale": s.upscale}}
        prompt[f"save_{branch}"] = {"class_type": "SaveImage", "inputs": {
            "images": _link(f"rgb_{branch}"), "filename_prefix": branch}}
    prompt["show_report"] = {"class_type": "PreviewAny", "inputs": {"source": _link("scale", 1)}}
    prompt["show_plot"] = {"class_type": "PreviewImage", "inputs": {"images": _link("scale", 2)}}
    return prompt
