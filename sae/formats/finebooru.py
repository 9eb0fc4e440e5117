"""finebooru / Krea SAEs (FLUX blocks, CLIP): ``config.json`` {features, pages, k} + ``model.safetensors``.

Published maths (finebooru ``TopkSparseAutoencoder``): ``features`` is the input width, ``pages`` the
number of SAE features. z = TopK(ReLU(encoder(x − bias))), x_hat = decoder(z) + bias, with
encoder = Linear(features → pages) and decoder = Linear(pages → features, no bias), so
``decoder.weight`` is [features, pages] and its transpose holds the feature directions.
The JumpReLU variant adds ``logthres`` [pages]: z = JumpReLU(ReLU(pre), exp(logthres)).
"""
from __future__ import annotations

from .spec import SAESpec, config_int, expect_shape
from .configs import hook_from

NAME = "finebooru"
WEIGHTS_FILE = "model.safetensors"
SIGNATURE = frozenset({"encoder.weight", "encoder.bias", "decoder.weight", "bias"})
DESCRIPTION = ("finebooru / Krea: config.json {features, pages, k} + model.safetensors "
               "(encoder.weight, encoder.bias, decoder.weight, bias)")


def matches(src) -> bool:
    return SIGNATURE <= src.keys()


def read(src, config: dict, config_path) -> SAESpec:
    path = src.path
    W_enc = src.get("encoder.weight")
    d_sae, d_in = W_enc.shape
    expect_shape(path, "encoder.bias", src.get("encoder.bias"), (d_sae,), "[pages]")
    expect_shape(path, "decoder.weight", src.get("decoder.weight"), (d_in, d_sae), "[features, pages]")
    expect_shape(path, "bias", src.get("bias"), (d_in,), "[features]")
    config_int(path, config, "features", d_in, config_path or "config")
    config_int(path, config, "pages", d_sae, config_path or "config")
    bias = src.get("bias")
    tensors = {"W_enc": W_enc, "b_enc": src.get("encoder.bias"), "W_dec": src.get("decoder.weight").T,
               "b_dec": bias, "b_pre": bias}
    if "logthres" in src.keys():
        expect_shape(path, "logthres", src.get("logthres"), (d_sae,), "[pages]")
        tensors["threshold"] = src.get("logthres").float().exp().to(W_enc.dtype)
        arch = "jumprelu"
    else:
        arch = "topk"
    return SAESpec(NAME, path, tensors, {"arch": arch, "k": config.get("k"), "hook": hook_from(config)})
