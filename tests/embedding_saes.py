"""Small SAEs (and a CLIP-vision output) for the embedding tests, from random tensors and the kernel's
constructor.

Feature ``DEAD`` never fires, for edits that must change nothing; the references below are
written out here, independently of the kernel.
"""
from __future__ import annotations

import torch
from comfyui_sae_steering.harness.sae_factory import random_sae

DEAD = 3


def relu_sae(d_in=768, d_sae=320, seed=0):
    """Like Gytis Daujotas's CLIP SAE: ReLU, no input centring, decoder rows of varied norms."""
    return random_sae(d_in=d_in, d_sae=d_sae, arch="relu", seed=seed, dead=(DEAD,), unit_decoder=False, centre=False)


def topk_sae(d_in=64, d_sae=256, k=12, seed=1):
    """Like the finebooru / sparsify SAEs: TopK with input centring."""
    return random_sae(d_in=d_in, d_sae=d_sae, k=k, seed=seed, dead=(DEAD,))


def reference_encode(sae, x):
    """z written out here, independently of the kernel: fp64, dense, per the SAE's architecture."""
    x = x.double()
    if sae.b_pre is not None:
        x = x - sae.b_pre.double()
    pre = x @ sae.W_enc.double().T + sae.b_enc.double()
    z = pre.clamp_min(0)
    if sae.arch == "topk":
        values, indices = z.topk(sae.k, dim=-1)
        z = torch.zeros_like(z).scatter(-1, indices, values)
    return z


def reference_decode(sae, z):
    return z @ sae.W_dec.double() + sae.b_dec.double()


def gytis_recipe(sae, x, feature, value, keep_error=True):
    """Gytis Daujotas's edit: encode, set ``feature`` to ``value``, decode, add back x − decode(z)."""
    z = reference_encode(sae, x)
    z_edit = z.clone()
    z_edit[..., feature] = value
    y = reference_decode(sae, z_edit)
    if keep_error:
        y = y + (x.double() - reference_decode(sae, z))
    return y


def clip_vision_output(batch=2, width=1280, tokens=5, seed=0):
    """What ViT-bigG's ``encode_image`` returns (comfy.clip_vision.Output), with random values."""
    import comfy.clip_vision

    g = torch.Generator().manual_seed(seed)
    out = comfy.clip_vision.Output()
    out["last_hidden_state"] = torch.randn(batch, tokens, width, generator=g)
    out["image_embeds"] = torch.randn(batch, width, generator=g)
    out["penultimate_hidden_states"] = torch.randn(batch, tokens, width, generator=g)
    out["mm_projected"] = None
    return out
