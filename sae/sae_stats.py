"""Streaming statistics of an SAE on the activations it reads: per-feature firing and reconstruction quality.

Accumulated sparsely from ``encode_sparse`` (never a dense [tokens, d_sae] tensor), token chunk by
token chunk, into fixed-size float64 buffers on the activations' device:
- per feature f: tokens where it fires (z_f > 0), Σ z_f and max z_f over those tokens;
- FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄ = per-channel mean over all tokens, merged à la Chan) and the
  mean cosine similarity cos(x, x̂) per token.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .running_stats import chan_merge


class SAEStats:
    def __init__(self, d_sae: int, d_in: int):
        self.d_sae, self.d_in = d_sae, d_in
        self.tokens = 0
        self._buffers = None  # made on the first update, on the activations' device

    def _make_buffers(self, device):
        zeros = lambda n: torch.zeros(n, dtype=torch.float64, device=device)  # noqa: E731
        self._buffers = dict(fired=zeros(self.d_sae), act_sum=zeros(self.d_sae), act_max=zeros(self.d_sae),
                             sq_err=zeros(()), cos_sum=zeros(()), x_mean=zeros(self.d_in), x_m2=zeros(self.d_in))

    @torch.no_grad()
    def update(self, sae, x: torch.Tensor) -> None:
        """Fold activations x [..., d_in] in, encoded by ``sae`` (on x's device)."""
        if x.shape[-1] != self.d_in or sae.d_sae != self.d_sae:
            raise ValueError(f"SAE statistics were set up for d_in={self.d_in}, d_sae={self.d_sae}; got activations "
                             f"{tuple(x.shape)} and an SAE with d_in={sae.d_in}, d_sae={sae.d_sae}")
        flat = x.detach().reshape(-1, self.d_in)
        if self._buffers is None:
            self._make_buffers(flat.device)
        b = self._buffers
        step = max(1, int(sae.chunk_tokens))
        for start in range(0, flat.shape[0], step):
            chunk = flat[start:start + step]
            values, indices = sae.encode_sparse(chunk)
            x_hat = sae.decode_sparse(values, indices, x=chunk).double()
            active = values > 0  # TopK keeps k entries; a ReLU'd 0 among them is not firing
            idx, val = indices[active], values[active].double()
            b["fired"].index_add_(0, idx, torch.ones_like(val))
            b["act_sum"].index_add_(0, idx, val)
            b["act_max"].scatter_reduce_(0, idx, val, reduce="amax")
            xd = chunk.double()
            b["sq_err"] += (xd - x_hat).square().sum()
            b["cos_sum"] += F.cosine_similarity(xd, x_hat, dim=-1).sum()
            n = xd.shape[0]
            mean = xd.mean(dim=0)
            _, b["x_mean"], b["x_m2"] = chan_merge(self.tokens, b["x_mean"], b["x_m2"],
                                                   n, mean, (xd - mean).square().sum(dim=0))
            self.tokens += n

    def summary(self) -> dict:
        """fvu, cosine, and per feature (lists of d_sae): frequency, mean and max activation when active
        (NaN and 0 for a feature that never fired)."""
        if not self.tokens:
            nan = [math.nan] * self.d_sae
            return {"fvu": math.nan, "cosine": math.nan,
                    "feature_frequency": [0.0] * self.d_sae, "feature_mean": nan, "feature_max": [0.0] * self.d_sae}
        b = {k: v.cpu() for k, v in self._buffers.items()}
        variance = float(b["x_m2"].sum())
        fired = b["fired"]
        mean = torch.where(fired > 0, b["act_sum"] / fired.clamp_min(1), torch.full_like(fired, math.nan))
        return {
            "fvu": float(b["sq_err"]) / variance if variance > 0 else math.nan,
            "cosine": float(b["cos_sum"]) / self.tokens,
            "feature_frequency": (fired / self.tokens).tolist(),
            "feature_mean": mean.tolist(),
            "feature_max": b["act_max"].tolist(),
        }
