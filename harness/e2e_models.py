"""Files the end-to-end server needs in its temporary base folder.

- Placeholders (empty files) under the names the example workflows expect: enough for ComfyUI's
  prompt validation, which checks that a combo value is one of the listed files; never executed.
- A real tiny TopK SAE for the tiny FLUX (width 64) in the finebooru folder layout
  (``config.json`` {features, pages, k} + ``model.safetensors``), for the real run.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from .sae_factory import random_sae

# model folder (relative to models/) -> the files the example workflows name, as users name them
PLACEHOLDER_MODELS = {
    "diffusion_models": ["flux1-dev.safetensors"],
    "text_encoders": ["clip_l.safetensors", "t5xxl_fp16.safetensors"],
    "vae": ["ae.safetensors"],
    "clip_vision": ["clip_vision_g.safetensors"],
    "checkpoints": ["sd_xl_base_1.0.safetensors"],
}
# SAEs of the example workflows: folder layouts (listed by their weights file) and single files
PLACEHOLDER_SAE_FOLDERS = {
    "flux_sae_single_9": {"features": 3072, "pages": 49152, "k": 16},
    "flux_sae_double_18": {"features": 3072, "pages": 49152, "k": 16},
}
PLACEHOLDER_SAE_FILES = ["clip_l_pooled_sae.safetensors", "clip-sae-128.pth"]
PLACEHOLDER_IMAGE = "example.png"

TINY_SAE_NAME = "e2e_tiny_topk"   # models/sae/<this>/ (config.json + model.safetensors)
TINY_SAE_WIDTH = 64               # = the tiny FLUX's hidden size
TINY_SAE_FEATURES = 256
TINY_SAE_K = 8


def write_placeholders(base: Path) -> None:
    models = base / "models"
    for folder, names in PLACEHOLDER_MODELS.items():
        (models / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (models / folder / name).write_bytes(b"")
    sae = models / "sae"
    for folder, config in PLACEHOLDER_SAE_FOLDERS.items():
        (sae / folder).mkdir(parents=True, exist_ok=True)
        (sae / folder / "config.json").write_text(json.dumps(config))
        (sae / folder / "model.safetensors").write_bytes(b"")
    for name in PLACEHOLDER_SAE_FILES:
        (sae / name).write_bytes(b"")
    (base / "input").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (200, 120, 40)).save(base / "input" / PLACEHOLDER_IMAGE)


def tiny_topk_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random TopK SAE 64 -> 256 with unit-norm decoder rows (the harness's ``random_sae``), as finebooru
    tensors (finebooru centres and decodes with the one ``bias``)."""
    sae = random_sae(d_in=TINY_SAE_WIDTH, d_sae=TINY_SAE_FEATURES, k=TINY_SAE_K, seed=seed)
    return {
        "encoder.weight": sae.W_enc.contiguous(),                      # [pages, features]
        "encoder.bias": sae.b_enc.contiguous(),                        # [pages]
        "decoder.weight": sae.W_dec.t().contiguous(),                  # [features, pages]
        "bias": sae.b_pre.contiguous(),                                # [features]
    }


def write_tiny_sae(base: Path) -> Path:
    folder = base / "models" / "sae" / TINY_SAE_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"features": TINY_SAE_WIDTH, "pages": TINY_SAE_FEATURES,
                                                    "k": TINY_SAE_K}))
    save_file(tiny_topk_tensors(), str(folder / "model.safetensors"))
    return folder
