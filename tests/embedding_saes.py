"""Small SAEs (and a CLIP-vision output) for the embedding tests, from random tensors and the kernel's
constructor.

``relu_sae`` is shaped like Gytis Daujotas's CLIP SAE (ReLU, no input centring, decoder rows not
unit-norm); ``topk_sae`` like the finebooru/sparsify ones (TopK, input centring). Feature
``DEAD`` never fires (zero encoder row, negative bias), for edits that must change nothing.
"""
from __future__ import annotations

import math

import torch

from comfyui_sae_steering.sae import SparseAutoencoder

DEAD = 3


def _weights(d_in, d_sae, seed):
    g = torch.Generator().manual_seed(seed)
    W_enc = torch.randn(d_sae, d_in, generator=g) / math.sqrt(d_in)
    b_enc = torch.randn(d_sae, generator=g) * 0.1 - 0.3  # a negative bias keeps the codes sparse
    W_dec = torch.randn(d_sae, d_in, generator=g) * (0.5 + torch.rand(d_sae, 1, generator=g)) / math.sqrt(d_in)
    b_dec = torch.randn(d_in, generator=g) * 0.05
    W_enc[DEAD] = 0.0
    b_enc[DEAD] = -1.0
    return g, W_enc, b_enc, W_dec, b_dec


def relu_sae(d_in=768, d_sae=320, seed=0):
    _, W_enc, b_enc, W_dec, b_dec = _weights(d_in, d_sae, seed)
    return SparseAutoencoder(W_enc, b_enc, W_dec, b_dec, arch="relu")


def topk_sae(d_in=64, d_sae=256, k=12, seed=1):
    g, W_enc, b_enc, W_dec, b_dec = _weights(d_in, d_sae, seed)
    b_pre = torch.randn(d_in, generator=g) * 0.1
    return SparseAutoencoder(W_enc, b_enc, W_dec, b_dec, arch="topk", k=k, b_pre=b_pre)


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
