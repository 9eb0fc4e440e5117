"""The streaming statistics against numpy on the same numbers, fed in pieces."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_sae_steering.sae import SparseAutoencoder, running_stats
from comfyui_sae_steering.sae.running_stats import ActivationStats, QUANTILES, RunningMoments, StreamingHistogram
from comfyui_sae_steering.sae.sae_stats import SAEStats
from comfyui_sae_steering.harness.sae_factory import random_sae


def batches(seed=0):
    """Batches whose range grows both ways (forces re-binning) with a heavy tail, like FLUX's outliers."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 40, 16, generator=g) * 0.1,
            torch.randn(2, 50, 16, generator=g) + 2.0,
            torch.randn(1, 30, 16, generator=g) * 5 - 3,
            torch.distributions.StudentT(2.0).sample((1, 20, 16)) * 4]


def test_moments_match_numpy():
    m = RunningMoments()
    data = batches()
    for b in data:
        m.update(b)
    ref = np.concatenate([b.numpy().ravel() for b in data]).astype(np.float64)
    assert m.count == ref.size
    np.testing.assert_allclose([m.mean, m.std], [ref.mean(), ref.std()], rtol=1e-5)
    assert (m.min, m.max) == (ref.min(), ref.max())


@pytest.mark.parametrize("bins", [2, 64, 4096])
def test_histogram_rebins_exactly_and_quantiles_within_a_bin(bins):
    h = StreamingHistogram(bins)
    data = batches(1)
    for b in data:
        h.update(b)
    ref = np.concatenate([b.numpy().ravel() for b in data]).astype(np.float64)
    assert h.counts.sum() == ref.size
    assert h.lo <= ref.min() and ref.max() <= h.hi
    # re-binning by pair merges keeps every count in the bin numpy puts it in (up to fp32 edge rounding)
    expected, _ = np.histogram(ref, bins=bins, range=(h.lo, h.hi))
    assert np.abs(h.counts.numpy() - expected).sum() <= 0.001 * ref.size
    qs = [0.0, 0.01, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0]
    got = h.quantiles(qs, ref.min(), ref.max())
    assert np.all(np.abs(np.array(got) - np.quantile(ref, qs)) <= h.width * (1 + 1e-6))


def test_constant_input_and_empty_histogram():
    h = StreamingHistogram(8)
    assert np.isnan(h.quantiles([0.5])[0])
    h.update(torch.full((10,), 3.0))
    assert h.quantiles([0.0, 0.5, 1.0], 3.0, 3.0) == [3.0, 3.0, 3.0]


def test_activation_stats_summary_matches_numpy(monkeypatch):
    monkeypatch.setattr(running_stats, "CHUNK_ELEMENTS", 100)  # many chunks per batch: merges are exercised
    stats = ActivationStats(bins=1024)
    data = batches(2)
    for b in data:
        stats.update(b)
    tokens = np.concatenate([b.reshape(-1, 16).numpy() for b in data]).astype(np.float64)
    values, norms = tokens.ravel(), np.linalg.norm(tokens, axis=1)
    s = stats.summary()
    assert list(s) == ["tokens", "mean", "std", "min", "max", "p25", "p50", "p75", "p95", "p99", "neg_frac",
                       "norm_mean", "norm_std", "norm_max"]
    assert s["tokens"] == tokens.shape[0]
    np.testing.assert_allclose([s["mean"], s["std"], s["norm_mean"], s["norm_std"], s["norm_max"]],
                               [values.mean(), values.std(), norms.mean(), norms.std(), norms.max()], rtol=1e-5)
    assert (s["min"], s["max"]) == (values.min(), values.max())
    assert s["neg_frac"] == (values < 0).mean()
    for name, q in QUANTILES.items():
        assert abs(s[name] - np.quantile(values, q)) <= stats.value_hist.width * (1 + 1e-6), name
    assert abs(stats.norm_quantiles([0.99])[0] - np.quantile(norms, 0.99)) <= stats.norm_hist.width * (1 + 1e-6)


def test_memory_does_not_grow_with_the_stream():
    stats = ActivationStats(bins=256)
    for b in batches(3) * 5:
        stats.update(b)
    sizes = [stats.value_hist.counts.numel(), stats.norm_hist.counts.numel()]
    for b in batches(4) * 20:
        stats.update(b)
    assert [stats.value_hist.counts.numel(), stats.norm_hist.counts.numel()] == sizes == [256, 256]


@pytest.mark.parametrize("arch,normalize", [("topk", None), ("relu", None), ("topk", "layer_norm")])
def test_sae_stats_match_a_direct_computation(arch, normalize):
    sae = random_sae(d_in=16, d_sae=48, k=4, arch=arch, seed=5, dead=(7,))
    if normalize:  # OpenAI's layout: x̂ is de-normalised with each token's own mean and std
        sae = SparseAutoencoder(*(sae.tensors()[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec")), arch=arch, k=4,
                                b_pre=sae.b_pre, normalize=normalize)
    sae.chunk_tokens = 17  # several chunks per batch
    stats = SAEStats(sae.d_sae, sae.d_in)
    data = batches(5)
    for b in data:
        stats.update(sae, b)
    x = torch.cat([b.reshape(-1, 16) for b in data]).double()
    z = sae.encode(x.float()).double()
    x_hat = sae.reconstruct(x.float()).double()
    fired = (z > 0).sum(0).double()
    s = stats.summary()
    assert stats.tokens == x.shape[0]
    np.testing.assert_allclose(s["feature_frequency"], (fired / x.shape[0]).numpy(), rtol=0, atol=0)
    mean = torch.where(fired > 0, z.sum(0) / fired.clamp_min(1), torch.nan)
    np.testing.assert_allclose(s["feature_mean"], mean.numpy(), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(s["feature_max"], z.max(0).values.numpy(), rtol=1e-6)
    assert np.isnan(s["feature_mean"][7]) and s["feature_frequency"][7] == 0
    fvu = (x - x_hat).square().sum() / (x - x.mean(0)).square().sum()
    cosine = torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).mean()
    np.testing.assert_allclose([s["fvu"], s["cosine"]], [float(fvu), float(cosine)], rtol=1e-5)


def test_sae_stats_refuse_other_widths():
    stats = SAEStats(48, 16)
    with pytest.raises(ValueError, match="d_sae=48"):
        stats.update(random_sae(d_in=16, d_sae=32, k=4), torch.zeros(2, 16))


def test_non_finite_activations_are_refused():
    stats = ActivationStats(bins=64)
    with pytest.raises(ValueError, match="inf or NaN"):
        stats.update(torch.tensor([[1.0, float("inf")], [0.0, 2.0]]))
