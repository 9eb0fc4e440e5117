"""Small SAEs for the tests, built with the kernel's constructor from seeded random tensors."""
from __future__ import annotations

import torch

from comfyui_sae_steering.sae import SparseAutoencoder


def random_sae(d_in: int = 64, d_sae: int = 256, k: int | None = 8, arch: str = "topk", seed: int = 0,
               dtype=torch.float32, dead: tuple[int, ...] = (), unit_decoder: bool = True,
               centre: bool = True, hook: str | None = None) -> SparseAutoencoder:
    """A random SAE; features in ``dead`` can never fire (hugely negative encoder bias).

    ``unit_decoder=False`` leaves decoder rows of varied norms and ``centre=False`` drops the input
    centring ``b_pre``: the shape of Gytis Daujotas's CLIP SAE, where "set to 40" means 40·‖d_f‖.
    """
    g = torch.Generator().manual_seed(seed)
    W_enc = torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5
    W_dec = torch.randn(d_sae, d_in, generator=g)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    if not unit_decoder:
        W_dec = W_dec * (0.5 + torch.rand(d_sae, 1, generator=g))
    b_enc = torch.randn(d_sae, generator=g) * 0.1
    for f in dead:
        b_enc[f] = -1e4
    b_dec = torch.randn(d_in, generator=g) * 0.1
    b_pre = torch.randn(d_in, generator=g) * 0.1
    return SparseAutoencoder(W_enc.to(dtype), b_enc.to(dtype), W_dec.to(dtype), b_dec.to(dtype),
                             arch=arch, k=k if arch == "topk" else None, b_pre=b_pre.to(dtype) if centre else None,
                             hook=hook)
