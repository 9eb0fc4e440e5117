"""The TopK SAE as a trainable ``nn.Module`` (so DDP can wrap it) and its loss, data-parallel exact.

Loss = FVU + auxk_coef · AuxK (Gao et al. 2024): FVU is the batch's squared error over a fixed
per-token variance (measured once on a data sample), AuxK makes the top ``k_aux`` dead latents
predict the main residual, scaled down while few latents are dead (sparsify's heuristic). Both are
written so that averaging the ranks' gradients (what DDP does) gives the gradient of the loss on
the whole global batch: the FVU is a per-token sum over a constant, and the AuxK denominator is the
residual's energy summed over all ranks.
"""
from __future__ import annotations

import torch
from torch import nn

from .autoencoder import LAYER_NORM_EPS, SparseAutoencoder
from .sparse_kernels import sparse_decode, sparse_encode

NORMALIZATIONS = ("scalar", "layer_norm", "none")


class TopKSAEModule(nn.Module):
    """W_enc [d_sae, d_in], b_enc [d_sae], W_dec [d_sae, d_in] (unit rows), b_dec [d_in] (also the input centre)."""

    auxk_coef = 1 / 32  # sparsify's weight of the auxiliary loss
    # encoder rows start at the norm of torch's default Linear init (sparsify's: uniform ±1/√d_in, norm 1/√3);
    # measured on the bench's FLUX activations, unit-norm encoder rows ended at FVU 0.48 instead of 0.37 after 100 steps
    encoder_init_norm = 3 ** -0.5

    def __init__(self, d_in: int, d_sae: int, k: int, generator: torch.Generator, b_dec: torch.Tensor):
        super().__init__()
        if not 0 < k <= d_sae:
            raise ValueError(f"k must be in 1..d_sae ({d_sae}), got {k}")
        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(W_dec * self.encoder_init_norm)  # encoder starts as the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(W_dec)
        self.b_dec = nn.Parameter(b_dec.detach().to(torch.float32).clone())
        self.k = k

    def forward(self, x, dead, token_variance, k_aux, reduce_sum, world: int = 1):
        """Returns (loss, squared error summed over this rank's tokens, fired latent indices).

        ``dead`` [d_sae] bool; ``reduce_sum(t)`` sums a tensor over the ranks (identity on one process)."""
        with torch.no_grad():  # the one dense matmul; gradients flow through the k chosen latents only
            centred = x - self.b_dec
            pre = torch.addmm(self.b_enc, centred, self.W_enc.T)
            indices = pre.topk(self.k, dim=-1, sorted=False).indices
        values = torch.relu(sparse_encode(pre, centred, self.W_enc, self.b_enc, self.b_dec, indices))
        error = x - (sparse_decode(values, indices, self.W_dec) + self.b_dec)
        squared = error.pow(2).sum()
        loss = squared / (x.shape[0] * token_variance)
        n_dead = int(dead.sum())
        if n_dead:
            with torch.no_grad():
                aux_indices = pre.masked_fill_(~dead, float("-inf")).topk(min(k_aux, n_dead), dim=-1,
                                                                         sorted=False).indices
                residual_energy = reduce_sum(squared.detach().clone()).clamp_min(1e-12)
            # dead latents' entries of pre are untouched by the mask
            aux_values = torch.relu(sparse_encode(pre, centred, self.W_enc, self.b_enc, self.b_dec, aux_indices))
            error_hat = sparse_decode(aux_values, aux_indices, self.W_dec)
            scale = min(n_dead / k_aux, 1.0)
            loss = loss + self.auxk_coef * scale * world * (error_hat - error.detach()).pow(2).sum() / residual_energy
        fired = indices[values.detach() > 0]
        return loss, squared.detach(), fired

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """The decoder rows stay unit norm: project each row's gradient off the row."""
        if self.W_dec.grad is not None:
            self.W_dec.grad -= (self.W_dec.grad * self.W_dec).sum(1, keepdim=True) * self.W_dec

    @torch.no_grad()
    def renormalise_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def to_sparse_autoencoder(self, normalize: str, scale: float, hook: str | None, source: str) -> SparseAutoencoder:
        """The trained SAE for raw activations. A scalar input scale c is folded in exactly: training saw x / c,
        so b_enc, b_dec (and the centre) are multiplied by c and the codes come out c times larger
        (in the raw activations' units) while the decoder rows stay unit norm."""
        c = scale if normalize == "scalar" else 1.0
        W_enc, W_dec = self.W_enc.detach().cpu().clone(), self.W_dec.detach().cpu().clone()
        b_enc, b_dec = self.b_enc.detach().cpu() * c, self.b_dec.detach().cpu() * c
        return SparseAutoencoder(W_enc, b_enc.clone(), W_dec, b_dec.clone(), arch="topk", k=self.k, b_pre=b_dec.clone(),
                                 normalize="layer_norm" if normalize == "layer_norm" else None, hook=hook,
                                 source=source)


def normalise(x: torch.Tensor, normalize: str, scale: float) -> torch.Tensor:
    """What the SAE is trained on: x / scale, the SAE's own layer norm, or x itself."""
    if normalize == "scalar":
        return x / scale
    if normalize == "layer_norm":  # the formula SparseAutoencoder applies (unbiased σ, eps added to σ)
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred / (centred.std(dim=-1, keepdim=True) + LAYER_NORM_EPS)
    if normalize == "none":
        return x
    raise ValueError(f"normalize {normalize!r} is not one of {', '.join(NORMALIZATIONS)}")


def input_scale(sample: torch.Tensor) -> float:
    """c with E‖x / c‖ = √d_in on the sample (SAELens's and Gao et al.'s scalar normalisation)."""
    return float(sample.norm(dim=1).mean() / sample.shape[1] ** 0.5) or 1.0
