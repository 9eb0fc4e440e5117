"""Gytis Daujotas's CLIP SAE (``gytdau/clip-sae-128``): a ``.pth`` state dict.

Published maths: z = ReLU(encoder.weight @ x + enc_bias) with no input centring,
x_hat = decoder.weight @ z + dec_bias; ``decoder.weight`` is [1280, n], its columns are the feature
directions and are not unit-norm (so "set feature to 40" writes 40·‖d_f‖).
"""
from __future__ import annotations

from .configs import hook_from
from .spec import SAESpec, expect_shape

NAME = "gytis"
SIGNATURE = frozenset({"encoder.weight", "enc_bias", "decoder.weight", "dec_bias"})
DESCRIPTION = "Gytis Daujotas CLIP SAE: .pth (encoder.weight, enc_bias, decoder.weight [d, n], dec_bias)"


def matches(src) -> bool:
    return SIGNATURE <= src.keys()


def read(src, config: dict, config_path) -> SAESpec:
    path = src.path
    W_enc = src.get("encoder.weight")
    d_sae, d_in = W_enc.shape
    expect_shape(path, "enc_bias", src.get("enc_bias"), (d_sae,))
    expect_shape(path, "decoder.weight", src.get("decoder.weight"), (d_in, d_sae), "[d_in, n]")
    expect_shape(path, "dec_bias", src.get("dec_bias"), (d_in,))
    tensors = {"W_enc": W_enc, "b_enc": src.get("enc_bias"), "W_dec": src.get("decoder.weight").T,
               "b_dec": src.get("dec_bias")}
    return SAESpec(NAME, path, tensors, {"arch": "relu", "hook": hook_from(config)})
