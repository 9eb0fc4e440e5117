"""Autograd functions for training a TopK SAE at the cost of the one dense encoder matmul.

Only k latents per token carry a gradient, so both the encoder's and the decoder's backward touch
k rows per token: index_add into [d_sae, d_in] instead of a dense [tokens, d_sae] @ [d_sae, d_in]
(the same idea as sparsify's fused encoder). Temporaries are cut into row chunks so that none is
larger than about ``CHUNK_ELEMENTS`` elements, whatever k, d_in and the batch. index_add_ and
embedding_bag's forward sum in a fixed order on the CPU, so a run is reproducible for a seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 24  # largest [rows, m, d_in] temporary of the backward passes (64 MB of fp32)


def _row_chunks(rows: int, m: int, d: int):
    step = max(1, CHUNK_ELEMENTS // max(1, m * d))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def _rows_outer_sum(weights: torch.Tensor, indices: torch.Tensor, vectors: torch.Tensor, n_rows: int):
    """out[f] = Σ over (b, j) with indices[b, j] == f of weights[b, j] · vectors[b]   ([n_rows, d])."""
    m, d = indices.shape[1], vectors.shape[1]
    out = vectors.new_zeros(n_rows, d)
    for rows in _row_chunks(indices.shape[0], m, d):
        contributions = weights[rows, :, None] * vectors[rows, None, :]
        out.index_add_(0, indices[rows].reshape(-1), contributions.reshape(-1, d))
    return out


def _rows_dot(matrix: torch.Tensor, indices: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """out[b, j] = matrix[indices[b, j]] · vectors[b]   ([tokens, m])."""
    m, d = indices.shape[1], matrix.shape[1]
    out = vectors.new_empty(indices.shape)
    for rows in _row_chunks(indices.shape[0], m, d):
        out[rows] = torch.einsum("bmd,bd->bm", matrix[indices[rows]], vectors[rows])
    return out


class SparseEncode(torch.autograd.Function):
    """pre[b, j] = x[b] · W_enc[idx[b, j]] + b_enc[idx[b, j]] for the chosen latents only."""

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, indices):
        ctx.save_for_backward(x, W_enc, indices)
        ctx.n_latents = W_enc.shape[0]
        return _rows_dot(W_enc, indices, x) + b_enc[indices]

    @staticmethod
    def backward(ctx, grad):
        x, W_enc, indices = ctx.saved_tensors
        grad_x = F.embedding_bag(indices, W_enc, per_sample_weights=grad, mode="sum") if ctx.needs_input_grad[0] else None
        grad_W = _rows_outer_sum(grad, indices, x, ctx.n_latents) if ctx.needs_input_grad[1] else None
        grad_b = None
        if ctx.needs_input_grad[2]:
            grad_b = grad.new_zeros(ctx.n_latents).index_add_(0, indices.reshape(-1), grad.reshape(-1))
        return grad_x, grad_W, grad_b, None


class SparseDecode(torch.autograd.Function):
    """x_hat[b] = Σ_j values[b, j] · W_dec[idx[b, j]] (no dense [tokens, d_sae] code is ever built)."""

    @staticmethod
    def forward(ctx, values, indices, W_dec):
        ctx.save_for_backward(values, indices, W_dec)
        return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx, grad):
        values, indices, W_dec = ctx.saved_tensors
        grad_values = _rows_dot(W_dec, indices, grad) if ctx.needs_input_grad[0] else None
        grad_W = _rows_outer_sum(values, indices, grad, W_dec.shape[0]) if ctx.needs_input_grad[2] else None
        return grad_values, None, grad_W


def sparse_encode(x, W_enc, b_enc, indices):
    return SparseEncode.apply(x, W_enc, b_enc, indices)


def sparse_decode(values, indices, W_dec):
    return SparseDecode.apply(values, indices, W_dec)
