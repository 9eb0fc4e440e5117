"""The latest measured activations of each SAE file, kept in the server's memory for the feature picker.

SAE Feature Scan and SAE Embedding Features record here what they measured (per-feature mean, max
and firing frequency over the tokens they saw); the ``/sae_steering/features`` route reads it back
by the SAE's weights file. Only the latest run per file is kept; nothing is written to disk.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Measurement:
    by: str                   # which node measured, and where ("SAE Feature Scan at double.img.out block 0")
    tokens: int               # vectors behind the numbers
    mean: torch.Tensor        # [d_sae] float64, CPU
    max: torch.Tensor         # [d_sae] float64, CPU
    fired: torch.Tensor       # [d_sae] int64, CPU: vectors where the feature was > 0


_LATEST: dict[str, Measurement] = {}
_LOCK = threading.Lock()


def sae_file(sae) -> str | None:
    """The real path of the weights file an SAE was loaded from (``source`` is ``"<format>:<path>"``)."""
    source = getattr(sae, "source", None)
    if not source or ":" not in source:
        return None
    return os.path.realpath(source.split(":", 1)[1])


def remember(sae, by: str, tokens: int, mean: torch.Tensor, max: torch.Tensor, fired: torch.Tensor) -> None:
    path = sae_file(sae)
    if path is None or tokens <= 0:
        return
    cpu = dict(mean=mean.detach().to("cpu", torch.float64), max=max.detach().to("cpu", torch.float64),
               fired=fired.detach().to("cpu", torch.int64))
    with _LOCK:
        _LATEST[path] = Measurement(by=by, tokens=int(tokens), **cpu)


def remember_stats(sae, by: str, stats) -> None:
    """Record a filled ``sae.feature_stats.FeatureStats``."""
    if stats is not None and stats.tokens:
        remember(sae, by, stats.tokens, stats.mean(), stats.max, stats.fired)


def measured(path: str) -> Measurement | None:
    with _LOCK:
        return _LATEST.get(os.path.realpath(path))
