"""Test data for the shard trainer: sparse synthetic activations written as a harvest would write them."""
from __future__ import annotations

import torch

from comfyui_sae_steering.sae.activation_shards import ShardWriter, prompts_digest

IDENTITY = dict(site="double.img.out", block=1, d_in=32, dtype="fp16", tokens="image")


def sparse_tokens(n=2048, d_in=32, n_atoms=96, active=3, seed=0):
    """Tokens built from a few of many random unit directions, plus an offset and a little noise."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d_in, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(n_atoms, generator=g)[:active] for _ in range(n)])
    coef = torch.rand(n, active, generator=g) * 3 + 0.5
    x = torch.einsum("nk,nkd->nd", coef, atoms[idx])
    return x + 2.0 + 0.01 * torch.randn(n, d_in, generator=g)


def write_shards(folder, tokens_per_shard=(1000, 1500, 700, 1200), seed=0, identity=IDENTITY):
    """Shards of unequal sizes (as real harvests give), returned with all their tokens in order (as stored)."""
    x = sparse_tokens(sum(tokens_per_shard), identity["d_in"], seed=seed)
    writer = ShardWriter(folder, identity, {"model": "synthetic"})
    start, stored = 0, []
    for i, n in enumerate(tokens_per_shard):
        writer.write(i, x[start:start + n], prompts_digest([f"prompt {i}"]), (i, i + 1))
        stored.append(x[start:start + n].half())
        start += n
    return torch.cat(stored)
