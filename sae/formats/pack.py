"""This pack's own single-file layout: one ``.safetensors`` with the canonical tensors and the config in
its metadata, so a user drops one file into ``models/sae/``.

Tensors: W_enc [d_sae, d_in], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in], optional b_pre [d_in]
(only when it differs from b_dec) and threshold [d_sae] (jumprelu).
Metadata ``sae_steering`` (JSON): {"version": 1, "arch", "k", "normalize", "hook", "centre":
"b_dec" | "b_pre" | "none", "source_format", "source"}, plus "training" for SAEs this pack trained.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .spec import SAESpec, expect_shape

NAME = "pack"
METADATA_KEY = "sae_steering"
VERSION = 1
DESCRIPTION = "this pack's single file: .safetensors (W_enc, b_enc, W_dec, b_dec, ...) with 'sae_steering' metadata"
_CENTRES = ("b_dec", "b_pre", "none")


def matches(src) -> bool:
    return METADATA_KEY in src.metadata


def read(src, config: dict, config_path) -> SAESpec:
    path = src.path
    try:
        meta = json.loads(src.metadata[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt '{METADATA_KEY}' metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("version") != VERSION:
        raise ValueError(f"{path}: '{METADATA_KEY}' metadata version {meta.get('version') if isinstance(meta, dict) else meta!r}"
                         f" is not supported (this pack writes version {VERSION})")
    W_enc = src.get("W_enc")
    d_sae, d_in = W_enc.shape
    tensors = {"W_enc": W_enc, "b_enc": src.get("b_enc"), "W_dec": src.get("W_dec"), "b_dec": src.get("b_dec")}
    centre = meta.get("centre", "none")
    if centre not in _CENTRES:
        raise ValueError(f"{path}: metadata centre={centre!r} is not one of {', '.join(_CENTRES)}")
    if centre == "b_dec":
        tensors["b_pre"] = tensors["b_dec"]
    elif centre == "b_pre":
        tensors["b_pre"] = src.get("b_pre")
    if meta.get("arch") == "jumprelu":
        tensors["threshold"] = src.get("threshold")
    for name, shape in (("b_enc", (d_sae,)), ("W_dec", (d_sae, d_in)), ("b_dec", (d_in,)), ("b_pre", (d_in,)),
                        ("threshold", (d_sae,))):
        if name in tensors:
            expect_shape(path, name, tensors[name], shape)
    # a release's per-feature means (sdxl-unbox mean.pt) travel with the converted file: "× feature mean" works unmeasured
    means = src.get("feature_means").float() if "feature_means" in src.keys() else None
    if means is not None:
        expect_shape(path, "feature_means", means, (d_sae,))
    config = {"arch": meta.get("arch"), "k": meta.get("k"), "normalize": meta.get("normalize"), "hook": meta.get("hook")}
    return SAESpec(NAME, path, tensors, config, feature_means=means)


def write(sae, path: Path, dtype: torch.dtype | None = None, source_format: str | None = None,
          training: dict | None = None) -> None:
    """Write ``sae`` (a ``SparseAutoencoder``) as this pack's single file, optionally cast to ``dtype``.

    ``training``: how a trainer made it (site, block, input normalisation, tokens...), kept in the metadata."""
    from safetensors.torch import save_file

    tensors = sae.tensors()
    if "b_pre" not in tensors:
        centre = "none"
    elif torch.equal(tensors["b_pre"], tensors["b_dec"]):  # input centred by the decoder bias: store it once
        centre = "b_dec"
        del tensors["b_pre"]
    else:
        centre = "b_pre"
    # safetensors wants contiguous tensors that share no storage (tied decoders and transposed views do)
    tensors = {name: t.detach().to("cpu", dtype or t.dtype).contiguous().clone() for name, t in tensors.items()}
    if getattr(sae, "feature_means", None) is not None:  # statistics, not weights: kept in fp32 whatever dtype
        tensors["feature_means"] = sae.feature_means.detach().to("cpu", torch.float32).contiguous().clone()
    meta = {"version": VERSION, "arch": sae.arch, "k": sae.k, "normalize": sae.normalize, "hook": sae.hook,
            "centre": centre, "source_format": source_format, "source": sae.source}
    if training is not None:
        meta["training"] = training
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta), "format": "pt"})
