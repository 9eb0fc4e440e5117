"""Autograd for training a TopK SAE at the cost of the one dense encoder matmul.

Only k latents per token carry a gradient, so the encoder's backward touches k rows per token: a
sparse product into [d_sae, d_in] instead of a dense [tokens, d_sae] @ [tokens, d_in] (the idea of
sparsify's fused encoder, which uses index_add). The chosen pre-activations are read from the dense
pre-activation matrix (no second dot product), and the gradient of the input centre ``b_dec`` is summed per latent first
(Σ_b Σ_j g_bj W_enc[idx_bj] = (per-latent sums of g) @ W_enc), never per token. The decoder is
``embedding_bag`` with its native backward.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


def _rows_outer_sum(weights: torch.Tensor, indices: torch.Tensor, vectors: torch.Tensor, n_rows: int):
    """out[f] = Σ over (b, j) with indices[b, j] == f of weights[b, j] · vectors[b]   ([n_rows, d]).

    A sparse [n_rows, tokens] CSR matrix (the weights, grouped by latent) times the dense vectors: no
    [tokens, k, d] temporary, a fixed summation order, 3.8x faster than index_add on the CPU bench sizes."""
    m = indices.shape[1]
    flat = indices.reshape(-1)
    order = torch.argsort(flat, stable=True)
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=flat.device)
    crow[1:] = torch.bincount(flat, minlength=n_rows).cumsum(0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is long stable
        warnings.simplefilter("ignore", UserWarning)
        grouped = torch.sparse_csr_tensor(crow, order // m, weights.reshape(-1)[order],
                                          size=(n_rows, indices.shape[0]))
        return grouped @ vectors


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
