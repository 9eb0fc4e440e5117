"""The TopK SAE trainer: deterministic, learns (FVU falls), reports FVU exactly, saves and reloads."""
import pytest
import torch

from comfyui_sae_steering.sae import load_sae
from comfyui_sae_steering.sae.formats import pack
from comfyui_sae_steering.sae.train import geometric_median, train_topk_sae
from train_data import sparse_tokens as sparse_data


def test_same_seed_gives_identical_weights_and_other_seed_differs():
    x = sparse_data()
    a, ra = train_topk_sae(x, d_sae=128, k=4, steps=40, seed=3)
    b, rb = train_topk_sae(x, d_sae=128, k=4, steps=40, seed=3)
    c, _ = train_topk_sae(x, d_sae=128, k=4, steps=40, seed=4)
    for name, t in a.tensors().items():
        assert torch.equal(t, b.tensors()[name]), name
    assert ra.fvu == rb.fvu and ra.fvu_history == rb.fvu_history
    assert not torch.equal(a.W_dec, c.W_dec)


def test_fvu_falls_and_reaches_a_useful_value():
    x = sparse_data()
    sae, report = train_topk_sae(x, d_sae=128, k=4, steps=300, lr=4e-3, seed=0, batch_size=256, log_every=50)
    first, last = report.fvu_history[0][1], report.fvu_history[-1][1]
    assert report.fvu_history[-1][0] == 299
    assert last < first / 3
    assert report.fvu < 0.2
    assert (report.steps, report.tokens, report.d_in, report.d_sae, report.k) == (300, 2048, 32, 128, 4)


def test_reported_fvu_and_dead_fraction_match_an_independent_computation():
    x = sparse_data(seed=1)
    sae, report = train_topk_sae(x, d_sae=96, k=4, steps=60, seed=1)
    # TopK(ReLU(W_e(x − b_pre) + b_e)) written out here, decoded densely
    pre = torch.relu((x - sae.b_pre) @ sae.W_enc.T + sae.b_enc)
    values, indices = pre.topk(4, dim=-1)
    z = torch.zeros_like(pre).scatter(-1, indices, values)
    x_hat = z @ sae.W_dec + sae.b_dec
    expected = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert report.fvu == pytest.approx(float(expected), rel=1e-4)
    assert report.dead_fraction == pytest.approx(float(1 - (z > 0).any(0).float().mean()))


def test_recipe_unit_norm_decoder_and_shared_bias():
    x = sparse_data(seed=2)
    sae, _ = train_topk_sae(x, d_sae=64, k=4, steps=20, seed=0, hook="double.img.out")
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    assert torch.equal(sae.b_pre, sae.b_dec)
    assert (sae.arch, sae.k, sae.d_in, sae.d_sae, sae.hook) == ("topk", 4, 32, 64, "double.img.out")


def test_input_is_not_mutated():
    x = sparse_data(seed=3)
    before = x.clone()
    train_topk_sae(x, d_sae=64, k=4, steps=5, seed=0)
    assert torch.equal(x, before)


def test_geometric_median_ignores_an_outlier_the_mean_follows():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1000.0, 1000.0]])
    median = geometric_median(points, iterations=200)
    assert median.norm() < 2.0 and points.mean(0).norm() > 200


@pytest.mark.parametrize("shape, d_sae, k, message", [
    ((10,), 8, 2, "tokens, d_in"), ((10, 4), 8, 9, "k must be"), ((10, 4), 8, 0, "k must be")])
def test_bad_arguments_raise_clear_errors(shape, d_sae, k, message):
    with pytest.raises(ValueError, match=message):
        train_topk_sae(torch.randn(shape), d_sae=d_sae, k=k, steps=1)


def test_non_finite_activations_are_refused():
    x = sparse_data()
    x[5, 3] = float("nan")
    with pytest.raises(ValueError, match="inf or NaN"):
        train_topk_sae(x, d_sae=64, k=4, steps=1)


def test_trained_sae_saves_and_reloads_through_load_sae(tmp_path):
    x = sparse_data(seed=4)
    sae, _ = train_topk_sae(x, d_sae=64, k=4, steps=30, seed=0, hook="single.out.1")
    path = tmp_path / "models" / "sae" / "trained.safetensors"
    path.parent.mkdir(parents=True)
    pack.write(sae, path)
    loaded = load_sae(path)
    for name, t in sae.tensors().items():
        assert torch.equal(loaded.tensors()[name], t), name
    assert (loaded.arch, loaded.k, loaded.hook) == ("topk", 4, "single.out.1")
    assert torch.equal(loaded.encode(x), sae.encode(x))
