"""SAELens SAEs: ``cfg.json`` + ``sae_weights.safetensors`` (v6 configs and the older ones).

Published maths (SAELens ``SAE.process_sae_in`` / ``encode`` / ``decode``):
    x_n = layer_norm(x) if normalize_activations == "layer_norm" (eps 1e-5, unbiased std), else x
    pre = (x_n − b_dec·apply_b_dec_to_input) @ W_enc + b_enc            W_enc is [d_in, d_sae]
    standard: z = ReLU(pre); topk: z = ReLU(top-k of pre); jumprelu: z = ReLU(pre)·[pre > threshold]
    x_hat = (z @ W_dec + b_dec) de-normalised
Older configs use ``activation_fn_str``/``activation_fn`` ("relu" | "topk" with ``activation_fn_kwargs.k``),
``hook_point`` and a boolean ``normalize_activations`` (true = "expected_average_only_in").
Anything that cannot be reproduced exactly (gated SAEs, dataset-norm scaling, a finetuning scaling
factor, decoder-norm rescaled TopK) is refused.
"""
from __future__ import annotations

import torch

from .configs import hook_from
from .spec import SAESpec, config_int, expect_shape

NAME = "saelens"
WEIGHTS_FILE = "sae_weights.safetensors"
SIGNATURE = frozenset({"W_enc", "b_enc", "W_dec", "b_dec"})
DESCRIPTION = ("SAELens: cfg.json + sae_weights.safetensors (W_enc [d_in, d_sae], b_enc, W_dec, b_dec, "
               "threshold for jumprelu)")
_KNOWN_TENSORS = SIGNATURE | {"threshold", "log_threshold", "scaling_factor", "finetuning_scaling_factor"}
_NORMALIZE = {None: None, False: None, "none": None, "layer_norm": "layer_norm"}


def matches(src) -> bool:
    return SIGNATURE <= src.keys()


def read(src, config: dict, config_path) -> SAESpec:
    path = src.path
    if not config:
        raise ValueError(f"{path}: SAELens weights need their cfg.json beside them (none found)")
    where = config_path or "cfg.json"
    W_enc = src.get("W_enc")
    d_in, d_sae = W_enc.shape
    expect_shape(path, "b_enc", src.get("b_enc"), (d_sae,))
    expect_shape(path, "W_dec", src.get("W_dec"), (d_sae, d_in))
    expect_shape(path, "b_dec", src.get("b_dec"), (d_in,))
    config_int(path, config, "d_in", d_in, where)
    config_int(path, config, "d_sae", d_sae, where)
    extra = src.keys() - _KNOWN_TENSORS
    if extra:
        raise ValueError(f"{path}: SAELens tensors {sorted(extra)} are not supported (cannot reproduce exactly)")
    _refuse_scaling(src, config, where)
    arch, k = _architecture(path, config, where)
    normalize = config.get("normalize_activations")
    if normalize is True or normalize not in _NORMALIZE:
        raise ValueError(f"{path}: SAELens normalize_activations={normalize!r} ({where}) is not supported "
                         "(only none and layer_norm can be reproduced exactly)")
    b_dec = src.get("b_dec")
    tensors = {"W_enc": W_enc.T, "b_enc": src.get("b_enc"), "W_dec": src.get("W_dec"), "b_dec": b_dec}
    if config.get("apply_b_dec_to_input", True):
        tensors["b_pre"] = b_dec
    if arch == "jumprelu":
        tensors["threshold"] = _threshold(src, d_sae)
    return SAESpec(NAME, path, tensors, {"arch": arch, "k": k, "normalize": _NORMALIZE[normalize],
                                         "hook": hook_from(config)})


def _architecture(path, config, where):
    arch = config.get("architecture", "standard")
    activation = config.get("activation_fn", config.get("activation_fn_str", "relu"))
    kwargs = config.get("activation_fn_kwargs") or {}
    if arch == "topk" or (arch == "standard" and activation == "topk"):
        if config.get("rescale_acts_by_decoder_norm"):
            raise ValueError(f"{path}: SAELens topk with rescale_acts_by_decoder_norm ({where}) is not supported")
        return "topk", config.get("k", kwargs.get("k"))
    if arch in ("standard", "jumprelu"):
        if activation not in ("relu", None):
            raise ValueError(f"{path}: SAELens activation {activation!r} ({where}) is not supported (relu or topk)")
        return ("relu" if arch == "standard" else "jumprelu"), None
    raise ValueError(f"{path}: SAELens architecture {arch!r} ({where}) is not supported (standard, topk, jumprelu)")


def _refuse_scaling(src, config, where):
    for name in ("scaling_factor", "finetuning_scaling_factor"):
        if name in src.keys() and not bool(torch.all(src.get(name) == 1)):
            raise ValueError(f"{src.path}: SAELens {name} tensor scales the features; not supported")
    if config.get("finetuning_scaling_factor") is True and not ({"scaling_factor", "finetuning_scaling_factor"}
                                                                 & src.keys()):
        raise ValueError(f"{src.path}: finetuning_scaling_factor=true ({where}) but no scaling tensor in the file")


def _threshold(src, d_sae):
    if "threshold" in src.keys():
        t = src.get("threshold")
    elif "log_threshold" in src.keys():
        t = src.get("log_threshold").float().exp().to(src.get("W_enc").dtype)
    else:
        raise ValueError(f"{src.path}: a jumprelu SAELens SAE needs a threshold (or log_threshold) tensor")
    expect_shape(src.path, "threshold", t, (d_sae,))
    return t
