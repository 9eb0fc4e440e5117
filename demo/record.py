"""Record a FLUX block's output activations during real sampling runs (training data for the demo SAE).

TODO(lead): switch to the pack's site machinery once it exposes a recorder, so the hook code exists
once; until then this is the plain block-replacement hook ComfyUI offers, on a clone of the model.
"""
from __future__ import annotations

import torch

from .tiny_flux import empty_latent, sample

# site -> (ComfyUI block kind, key of the block output that holds the site's tokens)
BLOCK_OUTPUT_SITES = {"double.img.out": ("double_block", "img"), "double.txt.out": ("double_block", "txt"),
                      "single.out": ("single_block", "img")}


def record_block_output(model, site: str, block: int, conditionings, width: int, height: int, steps: int,
                        seed: int = 0) -> torch.Tensor:
    """Sample once per conditioning (cfg 1, euler) and return every step's activations at ``site`` of
    ``block`` as [tokens, hidden] in fp32. ``model`` itself is left unpatched."""
    if site not in BLOCK_OUTPUT_SITES:
        raise ValueError(f"recording supports sites {', '.join(BLOCK_OUTPUT_SITES)}, not {site!r}")
    kind, stream = BLOCK_OUTPUT_SITES[site]
    captured: list[torch.Tensor] = []

    def record(args, extra):
        out = extra["original_block"](args)
        captured.append(out[stream].detach().to(torch.float32).reshape(-1, out[stream].shape[-1]).clone())
        return out

    recording = model.clone()
    recording.set_model_patch_replace(record, "dit", kind, block)
    for i, conditioning in enumerate(conditionings):
        sample(recording, conditioning, latent=empty_latent(width, height), steps=steps, cfg=1.0, seed=seed + i)
    if not captured:
        raise ValueError(f"nothing was recorded at {site} block {block}: is the block index in range?")
    return torch.cat(captured)
