"""FeatureStats (sparse streaming statistics) and rank_features against dense computations."""
from __future__ import annotations

import pytest
import torch

from comfyui_sae_steering.sae import feature_stats
from comfyui_sae_steering.sae.feature_stats import FeatureStats, rank_features
from comfyui_sae_steering.sae.scan_result import scan_result
from comfyui_sae_steering.harness.sae_factory import random_sae


@pytest.mark.parametrize("arch", ["topk", "relu"])
@pytest.mark.parametrize("merge_pairs", [7, 1 << 20])
def test_sparse_accumulation_equals_dense(monkeypatch, arch, merge_pairs):
    monkeypatch.setattr(feature_stats, "MERGE_PAIRS", merge_pairs)  # small: merges happen on the way
    sae = random_sae(d_in=16, d_sae=40, k=5, arch=arch, seed=2)
    sae.chunk_tokens = 7
    g = torch.Generator().manual_seed(0)
    grid = 12
    stats = FeatureStats(sae.d_sae, positions=grid)
    dense, positions_seen = [], []
    for _ in range(5):  # five "forwards" of 3 rows x (4 text + 12 image tokens)
        x = torch.randn(3, 16, 16, generator=g)
        positions = torch.cat([torch.full((4,), -1), torch.arange(grid)]).repeat(3)
        values, indices = sae.encode_sparse(x.reshape(-1, 16))
        stats.add(values, indices, positions)
        dense.append(sae.encode(x.reshape(-1, 16)).double())
        positions_seen.append(positions)
    z, positions = torch.cat(dense), torch.cat(positions_seen)
    assert stats.tokens == z.shape[0]
    torch.testing.assert_close(stats.mean(), z.mean(0))
    torch.testing.assert_close(stats.frequency(), (z > 0).double().mean(0))
    torch.testing.assert_close(stats.max, z.amax(0))
    features = [3, 0, 17, 39]
    on_grid = z[positions >= 0].reshape(-1, grid, sae.d_sae)
    torch.testing.assert_close(stats.position_means(features), on_grid.mean(0)[:, features].T)


def test_rank_ties_go_to_the_lower_index_and_top_n_is_clamped():
    score = torch.tensor([1.0, 3.0, 3.0, 0.0, 3.0])
    assert rank_features(score, 3).tolist() == [1, 2, 4]
    assert rank_features(score, 99).tolist() == [1, 2, 4, 0, 3]
    with pytest.raises(ValueError, match="top_n"):
        rank_features(score, 0)


def test_nothing_recorded_is_a_clear_error():
    with pytest.raises(ValueError, match="no activations were recorded"):
        scan_result(FeatureStats(8, positions=4), 3, (2, 2))


def test_bad_shapes_are_refused():
    stats = FeatureStats(8, positions=4)
    with pytest.raises(ValueError, match=r"\[n, m\]"):
        stats.add(torch.ones(3, 2), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        stats.add(torch.ones(1, 2), torch.zeros(1, 2, dtype=torch.long), torch.tensor([4]))
