"""OpenAI ``sparse_autoencoder`` checkpoints: a ``.pt`` state dict.

Published maths (``Autoencoder``): with ``normalize`` (which their loader switches on exactly when the
activation is TopK) x is layer-normalised per token, x_n = (x − μ)/(σ + 1e-5), σ the unbiased std;
z = activation(encoder(x_n − pre_bias) + latent_bias), TopK = top-k of the pre-activations then ReLU;
x_hat = (decoder(z) + pre_bias)·σ + μ. ``decoder.weight`` is [d, n]; a tied decoder stores no weight
of its own (``decoder.linear.weight`` is the encoder's). Non-tensor entries: ``activation`` (class name)
and ``activation_state_dict`` ({k, postact_fn}).
"""
from __future__ import annotations

from .configs import hook_from
from .spec import SAESpec, expect_shape

NAME = "openai"
SIGNATURE = frozenset({"pre_bias", "encoder.weight", "latent_bias"})
DESCRIPTION = ("OpenAI sparse_autoencoder: .pt (pre_bias, encoder.weight, latent_bias, decoder.weight [d, n], "
               "activation, activation_state_dict)")


def matches(src) -> bool:
    return SIGNATURE <= src.keys()


def read(src, config: dict, config_path) -> SAESpec:
    path = src.path
    W_enc = src.get("encoder.weight")
    d_sae, d_in = W_enc.shape
    expect_shape(path, "latent_bias", src.get("latent_bias"), (d_sae,))
    expect_shape(path, "pre_bias", src.get("pre_bias"), (d_in,))
    if "decoder.weight" in src.keys():
        expect_shape(path, "decoder.weight", src.get("decoder.weight"), (d_in, d_sae), "[d, n]")
        W_dec = src.get("decoder.weight").T
    elif "decoder.linear.weight" in src.keys():  # TiedTranspose: the decoder is the encoder transposed
        W_dec = src.get("decoder.linear.weight")
        expect_shape(path, "decoder.linear.weight", W_dec, (d_sae, d_in), "tied decoder")
    else:
        raise ValueError(f"{path}: OpenAI layout without decoder.weight (nor a tied decoder.linear.weight)")
    activation = src.extras.get("activation", "ReLU")
    state = src.extras.get("activation_state_dict") or {}
    if activation == "TopK":
        postact = state.get("postact_fn", "ReLU")
        if postact != "ReLU":
            raise ValueError(f"{path}: OpenAI TopK with postact_fn {postact!r} is not supported (only ReLU)")
        arch, normalize, k = "topk", "layer_norm", state.get("k", config.get("k"))
    elif activation == "ReLU":
        arch, normalize, k = "relu", None, None
    else:
        raise ValueError(f"{path}: OpenAI activation {activation!r} is not supported (TopK or ReLU)")
    pre_bias = src.get("pre_bias")
    tensors = {"W_enc": W_enc, "b_enc": src.get("latent_bias"), "W_dec": W_dec, "b_dec": pre_bias, "b_pre": pre_bias}
    return SAESpec(NAME, path, tensors, {"arch": arch, "k": k, "normalize": normalize, "hook": hook_from(config)})
