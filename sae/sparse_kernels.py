"""Autograd for training a TopK SAE at the cost of the one dense encoder matmul.

Only k latents per token carry a gradient, so the encoder's backward touches k rows per token: an
index_add into [d_sae, d_in] instead of a dense [tokens, d_sae] @ [tokens, d_in] (the idea of
sparsify's fused encoder). The chosen pre-activations are read from the dense pre-activation matrix
(no second dot product), and the gradient of the input centre ``b_dec`` is summed per latent first
(Σ_b Σ_j g_bj W_enc[idx_bj] = (per-latent sums of g) @ W_enc), never per token. The decoder is
``embedding_bag`` with its native backward. Temporaries of the W_enc gradient are cut into row
chunks of at most ``CHUNK_ELEMENTS`` elements.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 24  # largest [rows, k, d_in] temporary of the encoder's backward (64 MB of fp32)


def _rows_outer_sum(weights: torch.Tensor, indices: torch.Tensor, vectors: torch.Tensor, n_rows: int):
    """out[f] = Σ over (b, j) with indices[b, j] == f of weights[b, j] · vectors[b]   ([n_rows, d])."""
    m, d = indices.shape[1], vectors.shape[1]
    out = vectors.new_zeros(n_rows, d)
    step = max(1, CHUNK_ELEMENTS // max(1, m * d))
    for start in range(0, indices.shape[0], step):
        rows = slice(start, start + step)
        contributions = weights[rows, :, None] * vectors[rows, None, :]
        out.index_add_(0, indices[rows].reshape(-1), contributions.reshape(-1, d))
    return out


class SparseEncode(torch.autograd.Function):
    """pre[b, j] = (x[b] − b_dec) · W_enc[idx[b, j]] + b_enc[idx[b, j]], read from the dense ``pre`` [tokens, d_sae]
    already computed; gradients to W_enc, b_enc and b_dec (``centred`` = x − b_dec, the data needs none)."""

    @staticmethod
    def forward(ctx, pre, centred, W_enc, b_enc, b_dec, indices):
        ctx.save_for_backward(centred, W_enc, indices)
        return pre.gather(1, indices)

    @staticmethod
    def backward(ctx, grad):
        centred, W_enc, indices = ctx.saved_tensors
        per_latent = grad.new_zeros(W_enc.shape[0]).index_add_(0, indices.reshape(-1), grad.reshape(-1))
        grad_W = _rows_outer_sum(grad, indices, centred, W_enc.shape[0]) if ctx.needs_input_grad[2] else None
        grad_b_dec = -(per_latent @ W_enc) if ctx.needs_input_grad[4] else None
        return None, None, grad_W, per_latent, grad_b_dec, None


def sparse_encode(pre, centred, W_enc, b_enc, b_dec, indices):
    return SparseEncode.apply(pre, centred, W_enc, b_enc, b_dec, indices)


def sparse_decode(values, indices, W_dec):
    """x_hat[b] = Σ_j values[b, j] · W_dec[idx[b, j]] (no dense [tokens, d_sae] code is ever built)."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")
