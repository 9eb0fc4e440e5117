"""``load_sae``: any public SAE layout (file or folder) -> ``SparseAutoencoder``."""
from __future__ import annotations

from pathlib import Path

import torch

from .autoencoder import SparseAutoencoder
from .formats import read_any
from .labels import labels_file_for, read_labels


def load_sae(path, device="cpu", dtype=None, k=None) -> SparseAutoencoder:
    """Load the SAE at ``path`` (a file or a folder), auto-detecting its layout.

    Weights keep the file's dtype unless ``dtype`` asks for another; ``k`` overrides or supplies the
    TopK k. Feature labels come from a labels file beside it (``sae/labels.py``). Unknown layouts, corrupt files and configs that disagree with the tensors raise
    ``ValueError``/``FileNotFoundError`` naming the file.
    """
    path = Path(path)
    dtype = None if dtype is None else _as_dtype(dtype)
    spec = read_any(path)
    tensors, config = spec.tensors, dict(spec.config)
    if k is not None:
        if config.get("arch") != "topk":
            raise ValueError(f"{path}: k={k} was given but this {spec.format} SAE is {config.get('arch')}, not TopK")
        config["k"] = k
    try:  # built on the (memory-mapped) file tensors first, so every check runs before anything is copied
        sae = SparseAutoencoder(tensors["W_enc"], tensors["b_enc"], tensors["W_dec"], tensors["b_dec"],
                                b_pre=tensors.get("b_pre"), threshold=tensors.get("threshold"),
                                source=f"{spec.format}:{path}", **config)
    except ValueError as err:
        raise ValueError(f"{path} ({spec.format} layout): {err}") from None
    sae.feature_means = spec.feature_means
    labels_path = labels_file_for(path)
    if labels_path is not None:
        sae.labels = read_labels(labels_path, sae.d_sae)
    if device is not None:
        sae.to(device)
    if dtype is not None:
        for name, t in sae.tensors().items():
            setattr(sae, name, t.to(dtype))
    return sae


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp64": torch.float64, "float64": torch.float64}


def _as_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"dtype {dtype!r} is not one of {', '.join(_DTYPES)} or a floating torch.dtype")
