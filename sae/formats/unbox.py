"""sdxl-unbox SAEs (surkovv/sdxl-unbox, ``SAE/sae.py``): a folder with ``config.json`` {n_dirs_local,
d_model, k, auxk, dead_steps_threshold}, ``state_dict.pth`` ({"state_dict": {...}}) and ``mean.pt``/``std.pt``.

Published maths (adapted from OpenAI's, without the layer norm): z = ReLU(TopK(encoder(x − pre_bias) +
latent_bias)), x_hat = decoder(z) + pre_bias, with ``encoder.weight`` [n, d] and ``decoder.weight`` [d, n].
The SAEs read a block's residual update (output − input); the folder is named after the block
(``unet.mid_block.attentions.0_k10_hidden5120_...``, weights in its ``final/``), so the hook is that
name plus ``.update``. ``mean.pt`` [n] holds each feature's mean activation: the unit of its strengths.
"""
from __future__ import annotations

import re

import torch

from .configs import hook_from
from .sources import load_torch
from .spec import SAESpec, config_int, expect_shape

NAME = "sdxl-unbox"
WEIGHTS_FILE = "state_dict.pth"
MEANS_FILE = "mean.pt"
STATS_FILES = (MEANS_FILE, "std.pt")  # per-feature statistics beside the weights, not SAEs
SIGNATURE = frozenset({"encoder.weight", "decoder.weight", "pre_bias", "latent_bias"})
DESCRIPTION = ("sdxl-unbox: config.json {n_dirs_local, d_model, k} + state_dict.pth (encoder.weight, "
               "decoder.weight [d, n], pre_bias, latent_bias) + optional mean.pt")
UPDATE_MARK = ".update"  # hook suffix of a residual-update site (output − input of the named block)
_RUN_SUFFIX = re.compile(r"_k\d+_hidden\d+.*$")  # training-run details after the block name


def matches(src) -> bool:
    # OpenAI's state dicts carry the same four tensors plus a non-tensor "activation" entry
    return SIGNATURE <= src.keys() and "activation" not in src.extras


def read(src, config: dict, config_path) -> SAESpec:
    path = src.path
    where = config_path or "config"
    W_enc = src.get("encoder.weight")
    d_sae, d_in = W_enc.shape
    expect_shape(path, "decoder.weight", src.get("decoder.weight"), (d_in, d_sae), "[d_model, n_dirs]")
    expect_shape(path, "pre_bias", src.get("pre_bias"), (d_in,), "[d_model]")
    expect_shape(path, "latent_bias", src.get("latent_bias"), (d_sae,), "[n_dirs]")
    config_int(path, config, "d_model", d_in, where)
    config_int(path, config, "n_dirs_local", d_sae, where)
    pre_bias = src.get("pre_bias")
    tensors = {"W_enc": W_enc, "b_enc": src.get("latent_bias"), "W_dec": src.get("decoder.weight").T,
               "b_dec": pre_bias, "b_pre": pre_bias}
    hook = hook_from(config) or _hook_from_folder(path)
    return SAESpec(NAME, path, tensors, {"arch": "topk", "k": config.get("k"), "hook": hook},
                   feature_means=_feature_means(path, d_sae))


def _hook_from_folder(weights) -> str | None:
    """``unet.up_blocks.0.attentions.1_k10_hidden5120_auxk256_bs4096_lr0.0001/final/state_dict.pth``
    -> ``unet.up_blocks.0.attentions.1.update``; None for a file outside such a folder."""
    folder = weights.parent.parent if weights.parent.name == "final" else weights.parent
    block = _RUN_SUFFIX.sub("", folder.name)
    if weights.name != WEIGHTS_FILE or not re.search(r"\.\d+(\.|$)", block):
        return None
    return block + UPDATE_MARK


def _feature_means(weights, d_sae: int):
    """``mean.pt`` beside the weights: one mean activation per feature, or None without the file."""
    means_path = weights.parent / MEANS_FILE
    if not means_path.is_file():
        return None
    means = load_torch(means_path)
    if not isinstance(means, torch.Tensor) or tuple(means.shape) != (d_sae,) or not means.is_floating_point():
        got = f"shape {tuple(means.shape)} {means.dtype}" if isinstance(means, torch.Tensor) else type(means).__name__
        raise ValueError(f"{means_path}: expected a float tensor of {d_sae} feature means, got {got}")
    return means.float()
