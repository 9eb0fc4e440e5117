"""What every reader returns: canonical tensors plus the config the ``SparseAutoencoder`` takes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class SAESpec:
    """``tensors``: W_enc [d_sae, d_in], b_enc, W_dec [d_sae, d_in], b_dec, optional b_pre and threshold.
    ``config``: arch, k, normalize, hook (the keyword arguments of ``SparseAutoencoder``).
    ``feature_means``: [d_sae] mean activation per feature, where the release ships them (sdxl-unbox)."""

    format: str
    path: Path
    tensors: dict[str, torch.Tensor]
    config: dict = field(default_factory=dict)
    feature_means: torch.Tensor | None = None


def expect_shape(path: Path, name: str, tensor: torch.Tensor, shape: tuple, what: str = "") -> None:
    """Refuse a tensor whose shape disagrees with the config or the other tensors, naming both."""
    if tuple(tensor.shape) != tuple(shape):
        extra = f" ({what})" if what else ""
        raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, expected {tuple(shape)}{extra}")


def config_int(path: Path, config: dict, key: str, actual: int, source: str) -> None:
    """A size in the config must match the tensors."""
    if key in config and config[key] is not None and int(config[key]) != actual:
        raise ValueError(f"{path}: {source} says {key}={config[key]} but the tensors have {actual}")
