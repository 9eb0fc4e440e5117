"""Tiny World's shipped models: where the weights live and how ComfyUI's own classes load them."""
from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FLUX_FILE = "tiny_world_flux.safetensors"
VAE_FILE = "tiny_world_vae.safetensors"
TEXT_ENCODER_FILE = "tiny_world_text_encoder.safetensors"
SAE_FILE = "tiny_world_sae.safetensors"  # the loader's SAE: image tokens out of the last single block
# every shipped SAE and the (site, block) it reads; the benchmark compares them
SAE_SITES = {SAE_FILE: ("single.out", 1), "tiny_world_sae_single0.safetensors": ("single.out", 0)}
SAE_FILES = list(SAE_SITES)
RETRAIN = "python -m demo.tiny_world_training (from the pack's folder; see docs/tiny_world.md)"

# FLUX.1's architecture at toy size: 16-channel latents at 1/8 of 64x64 (8x8 -> 16 tokens), no guidance input
FLUX_CONFIG = dict(
    image_model="flux", in_channels=16, out_channels=16, vec_in_dim=64, context_in_dim=64,
    hidden_size=128, mlp_ratio=4.0, num_heads=4, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12],
    theta=10000, patch_size=2, qkv_bias=True, guidance_embed=False, txt_ids_dims=[],
)


def weight_path(name: str, weights_dir: Path | None = None) -> Path:
    path = Path(weights_dir or WEIGHTS_DIR) / name
    if not path.is_file():
        raise FileNotFoundError(f"Tiny World weights missing: {path}. Retrain them with {RETRAIN}.")
    return path


def build_flux(state_dict: dict | None = None, device="cpu"):
    """A ``ModelPatcher`` around ComfyUI's FLUX class built from ``FLUX_CONFIG`` (as ComfyUI builds FLUX)."""
    import comfy.model_patcher
    import comfy.supported_models

    device = torch.device(device)  # ComfyUI's memory management reads device.type
    model_config = comfy.supported_models.Flux(dict(FLUX_CONFIG))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=device)
    if state_dict is not None:
        model.diffusion_model.load_state_dict(state_dict, strict=True)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def load_models(weights_dir: Path | None = None):
    """(MODEL, CLIP, VAE, SAE path) from the shipped files."""
    import comfy.sd
    import comfy.utils

    from .text_encoder import load_clip

    flux = build_flux(comfy.utils.load_torch_file(str(weight_path(FLUX_FILE, weights_dir)), safe_load=True))
    vae_sd = comfy.utils.load_torch_file(str(weight_path(VAE_FILE, weights_dir)), safe_load=True)
    vae = comfy.sd.VAE(sd={k: v.float() for k, v in vae_sd.items()})
    clip = load_clip(comfy.utils.load_torch_file(str(weight_path(TEXT_ENCODER_FILE, weights_dir)), safe_load=True))
    return flux, clip, vae, weight_path(SAE_FILE, weights_dir)

