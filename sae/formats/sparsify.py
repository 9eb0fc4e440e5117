"""EleutherAI sparsify SAEs: ``cfg.json`` {d_in, num_latents or expansion_factor, k, ...} + ``sae.safetensors``.

Published maths (sparsify ``SparseCoder``, autoencoding): z = TopK(ReLU(encoder(x − b_dec))),
x_hat = z @ W_dec + b_dec, with ``encoder.weight`` [n, d], ``W_dec`` [n, d]. One folder per hookpoint,
named after it. Transcoders, skip connections and other variants change the maths and are refused.
"""
from __future__ import annotations

from .configs import hook_from
from .spec import SAESpec, config_int, expect_shape

NAME = "sparsify"
WEIGHTS_FILE = "sae.safetensors"
SIGNATURE = frozenset({"encoder.weight", "encoder.bias", "W_dec", "b_dec"})
DESCRIPTION = "EleutherAI sparsify: cfg.json + sae.safetensors (encoder.weight, encoder.bias, W_dec, b_dec)"
# Config switches whose maths is not a plain TopK autoencoder.
_UNSUPPORTED = ("transcode", "skip_connection", "matching_pursuit", "embed_skip", "gram_lookup")


def matches(src) -> bool:
    return SIGNATURE <= src.keys()


def read(src, config: dict, config_path) -> SAESpec:
    path = src.path
    where = config_path or "config"
    for flag in _UNSUPPORTED:
        if config.get(flag):
            raise ValueError(f"{path}: sparsify {flag}=true ({where}) is not a plain autoencoder and is not supported")
    activation = config.get("activation", "topk")
    if activation != "topk":
        raise ValueError(f"{path}: sparsify activation {activation!r} ({where}) is not supported (only topk)")
    extra = src.keys() - SIGNATURE
    if extra:
        raise ValueError(f"{path}: sparsify tensors {sorted(extra)} change the maths and are not supported")
    W_enc = src.get("encoder.weight")
    d_sae, d_in = W_enc.shape
    expect_shape(path, "encoder.bias", src.get("encoder.bias"), (d_sae,))
    expect_shape(path, "W_dec", src.get("W_dec"), (d_sae, d_in))
    expect_shape(path, "b_dec", src.get("b_dec"), (d_in,))
    config_int(path, config, "d_in", d_in, where)
    if config.get("num_latents"):
        config_int(path, config, "num_latents", d_sae, where)
    elif config.get("expansion_factor") and "d_in" in config:
        config_int(path, {"num_latents": int(config["d_in"]) * int(config["expansion_factor"])},
                   "num_latents", d_sae, f"{where} (d_in × expansion_factor)")
    b_dec = src.get("b_dec")
    tensors = {"W_enc": W_enc, "b_enc": src.get("encoder.bias"), "W_dec": src.get("W_dec"),
               "b_dec": b_dec, "b_pre": b_dec}
    hook = hook_from(config) or path.parent.name or None
    return SAESpec(NAME, path, tensors, {"arch": "topk", "k": config.get("k"), "hook": hook})
