"""Tiny DiT models of every family the DiT and FLUX-like taps hook, built the way ComfyUI builds them
(``comfy.supported_models.<Config>(unet_config)`` with the keys ``comfy/model_detection.py`` produces, small
widths and depths), random weights, on the CPU; their conditioning and empty latents.
"""
from __future__ import annotations

import torch

from .tiny_unet import tiny_patcher

# supported_models config class, unet_config, context width, latent shape (batch 1)
TINY_DITS = {
    "SD3": ("SD3", dict(in_channels=16, out_channels=16, patch_size=2, depth=2, num_blocks=3, input_size=None,
                        adm_in_channels=32, context_embedder_config={
                            "target": "torch.nn.Linear", "params": {"in_features": 32, "out_features": 128}}),
            32, (16, 8, 8)),
    "QwenImage": ("QwenImage", dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16,
                                    num_layers=3, attention_head_dim=16, num_attention_heads=4,
                                    joint_attention_dim=32, axes_dims_rope=(4, 6, 6)),
                  32, (16, 1, 8, 8)),
    "Lumina2": ("Lumina2", dict(image_model="lumina2", patch_size=2, in_channels=16, dim=64, n_layers=3,
                                n_refiner_layers=1, n_heads=4, n_kv_heads=2, multiple_of=16, ffn_dim_multiplier=4.0,
                                qk_norm=True, cap_feat_dim=32, axes_dims=[4, 6, 6], axes_lens=[300, 512, 512],
                                rope_theta=10000.0),
                32, (16, 8, 8)),
    # Z-Image's modulation fixes a 256-wide time embedding, so 256 is its narrowest width
    "ZImage": ("ZImage", dict(image_model="lumina2", patch_size=2, in_channels=16, dim=256, n_layers=2,
                              n_refiner_layers=1, n_heads=4, n_kv_heads=4, multiple_of=16,
                              ffn_dim_multiplier=8.0 / 3.0, qk_norm=True, cap_feat_dim=32, axes_dims=[16, 24, 24],
                              axes_lens=[1536, 512, 512], rope_theta=256.0, z_image_modulation=True,
                              time_scale=1000.0, pad_tokens_multiple=32),
               32, (16, 8, 8)),
    "WAN21_T2V": ("WAN21_T2V", dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=16,
                                    in_dim=16, dim=64, ffn_dim=128, freq_dim=32, text_dim=32, out_dim=16, num_heads=4,
                                    num_layers=3, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6),
                  32, (16, 3, 8, 8)),
    "WAN22_T2V": ("WAN22_T2V", dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=16,
                                    in_dim=48, dim=64, ffn_dim=128, freq_dim=32, text_dim=32, out_dim=48, num_heads=4,
                                    num_layers=2, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6),
                  32, (48, 2, 8, 8)),
    "Flux2": ("Flux2", dict(image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=32,
                            hidden_size=64, mlp_ratio=3.0, num_heads=4, depth=2, depth_single_blocks=2,
                            axes_dim=[4, 4, 4, 4], theta=2000, patch_size=1, qkv_bias=False, guidance_embed=True,
                            txt_ids_dims=[3], global_modulation=True, mlp_silu_act=True, ops_bias=False,
                            default_ref_method="index", ref_index_scale=10.0),
              32, (128, 4, 4)),
    "Chroma": ("Chroma", dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=32, hidden_size=64,
                              mlp_ratio=4.0, num_heads=4, depth=2, depth_single_blocks=2, axes_dim=[4, 6, 6],
                              theta=10000, patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=128,
                              n_layers=2, txt_ids_dims=[], vec_in_dim=None),
               32, (16, 8, 8)),
}


def build_tiny_dit(name: str, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides):
    """A ``ModelPatcher`` around a tiny model of config ``name`` (a key of ``TINY_DITS``), weights from ``seed``;
    ``overrides`` change the unet_config (e.g. ``in_dim_ref_conv`` for a Wan with a reference-image conv)."""
    import comfy.supported_models

    config_name, unet_config, _, _ = TINY_DITS[name]
    return tiny_patcher(getattr(comfy.supported_models, config_name)({**unet_config, **overrides}), seed, dtype)


def tiny_dit_conditioning(name: str, seed: int, tokens: int = 7) -> list:
    """A CONDITIONING for the tiny model ``name``: ``tokens`` random context tokens (SD3: a pooled vector too)."""
    g = torch.Generator().manual_seed(seed)
    width = TINY_DITS[name][2]
    context = torch.randn(1, tokens, width, generator=g)
    if name == "SD3":
        return [[context, {"pooled_output": torch.randn(1, TINY_DITS[name][1]["adm_in_channels"], generator=g)}]]
    return [[context, {"pooled_output": None}]]  # what CLIPTextEncode gives where the encoder pools nothing


def tiny_dit_latent(name: str, batch: int = 1) -> torch.Tensor:
    """An empty latent of the tiny model ``name`` (video families: [batch, C, frames, h, w])."""
    return torch.zeros(batch, *TINY_DITS[name][3])
