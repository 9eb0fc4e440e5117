"""The shard trainer: exact sparse gradients, learning, the file it writes, resume and refusals."""
import json

import pytest
import torch

from comfyui_sae_steering.sae import load_sae
from comfyui_sae_steering.sae.sparse_kernels import sparse_decode, sparse_encode
from comfyui_sae_steering.sae.topk_model import normalise
from comfyui_sae_steering.sae.train_shards import TrainSettings, learning_rate, sample_tokens, train_on_shards
from comfyui_sae_steering.sae.activation_shards import ActivationShards
from train_data import write_shards

SMALL = dict(d_sae=128, k=4, batch_size=256, block_tokens=400, buffer_blocks=2, lr=4e-3, log_every=10,
             init_tokens=2048, eval_tokens=4400)


def test_sparse_kernels_match_dense_autograd():
    g = torch.Generator().manual_seed(0)
    x, W_enc, b_enc, W_dec = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((9, 6), (20, 6), (20,), (20, 6)))
    idx = torch.stack([torch.randperm(20, generator=g)[:4] for _ in range(9)])
    grad_out = torch.randn(9, 6, generator=g, dtype=torch.float64)
    b_dec = torch.randn(6, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (b_dec, W_enc, b_enc, W_dec)]
    with torch.no_grad():
        centred = x - leaves[0]
        pre = centred @ leaves[1].T + leaves[2]
    values = torch.relu(sparse_encode(pre, centred, leaves[1], leaves[2], leaves[0], idx))
    sparse_decode(values, idx, leaves[3]).mul(grad_out).sum().backward()
    dense = [t.clone().requires_grad_(True) for t in (b_dec, W_enc, b_enc, W_dec)]
    pre = (x - dense[0]) @ dense[1].T + dense[2]
    z = torch.zeros(9, 20, dtype=torch.float64).scatter(1, idx, torch.relu(pre.gather(1, idx)))
    (z @ dense[3]).mul(grad_out).sum().backward()
    for a, b in zip(leaves, dense):
        assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_learning_rate_warms_up_then_decays_to_zero():
    lrs = [learning_rate(s, 100, 1.0, 10, 0.2) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0 and lrs[50] == 1.0
    assert lrs[80] == 1.0 and lrs[90] == pytest.approx(0.5) and lrs[99] == pytest.approx(0.05)


def _train(tmp_path, name="sae.safetensors", **overrides):
    settings = TrainSettings(**{**SMALL, **overrides})
    return train_on_shards(tmp_path / "acts", tmp_path / name, settings, device="cpu")


def test_learns_and_reports_fvu_exactly(tmp_path):
    write_shards(tmp_path / "acts")
    sae, report = _train(tmp_path, tokens=4400 * 6)
    assert report.steps == 4400 * 6 // 256 and report.tokens == report.steps * 256
    assert report.history[-1][1] < report.history[0][1] / 2
    assert report.fvu < 0.15
    x = sample_tokens(ActivationShards.open(tmp_path / "acts"), 4400, seed=1)  # the whole data, as stored
    pre = torch.relu((x - sae.b_pre) @ sae.W_enc.T + sae.b_enc)
    values, indices = pre.topk(4, dim=-1)
    z = torch.zeros_like(pre).scatter(-1, indices, values)
    expected = ((x - (z @ sae.W_dec + sae.b_dec)) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert report.fvu == pytest.approx(float(expected), rel=1e-4)
    assert report.dead_fraction == pytest.approx(float(1 - (z > 0).any(0).float().mean()))
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-5)


def _training_metadata(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["sae_steering"])["training"]


def test_written_file_loads_with_site_and_training_metadata(tmp_path):
    write_shards(tmp_path / "acts")
    sae, report = _train(tmp_path, tokens=2560)
    loaded = load_sae(tmp_path / "sae.safetensors")
    for name, t in sae.tensors().items():
        assert torch.equal(loaded.tensors()[name], t), name
    assert (loaded.hook, loaded.k, loaded.normalize) == ("double.img.out.1", 4, None)
    training = _training_metadata(tmp_path / "sae.safetensors")
    assert (training["site"], training["block"], training["training_tokens"]) == ("double.img.out", 1, 2560)
    assert training["normalization"]["kind"] == "scalar" and training["normalization"]["scale"] > 0
    assert training["fvu"] == pytest.approx(report.fvu)


@pytest.mark.parametrize("normalize", ["scalar", "layer_norm", "none"])
def test_saved_sae_on_raw_activations_equals_the_trained_model_on_normalised_ones(tmp_path, normalize):
    """The scalar scale is folded into the weights; layer norm is the SAE's own; the file reads raw activations."""
    write_shards(tmp_path / "acts")
    captured = {}

    def keep(step, steps, fvu):
        captured["step"] = step
    settings = TrainSettings(**{**SMALL, "tokens": 1280, "normalize": normalize})
    sae, _ = train_on_shards(tmp_path / "acts", tmp_path / "s.safetensors", settings, device="cpu",
                             on_step=keep)
    meta_scale = _training_metadata(tmp_path / "s.safetensors")["normalization"]["scale"]
    x = sample_tokens(ActivationShards.open(tmp_path / "acts"), 500, seed=9)
    xn = normalise(x, normalize, meta_scale)
    c = meta_scale if normalize == "scalar" else 1.0
    b_dec = sae.b_dec / c
    pre = torch.relu((xn - b_dec) @ sae.W_enc.T + sae.b_enc / c)
    values, indices = pre.topk(4, dim=-1)
    recon_n = torch.zeros_like(pre).scatter(-1, indices, values) @ sae.W_dec + b_dec
    if normalize == "layer_norm":
        mu, centred = x.mean(-1, keepdim=True), x - x.mean(-1, keepdim=True)
        expected = recon_n * centred.std(-1, keepdim=True) + mu  # the SAE undoes σ without its eps
    else:
        expected = recon_n * c
    assert torch.allclose(sae.reconstruct(x), expected, atol=1e-4)
    assert captured["step"] == 5


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    write_shards(tmp_path / "acts")
    whole, _ = _train(tmp_path, "whole.safetensors", tokens=256 * 12, checkpoint_every=5)

    def stop_at_8(step, steps, fvu):
        if step == 8:
            raise KeyboardInterrupt
    settings = TrainSettings(**{**SMALL, "tokens": 256 * 12, "checkpoint_every": 5})
    with pytest.raises(KeyboardInterrupt):
        train_on_shards(tmp_path / "acts", tmp_path / "resumed.safetensors", settings, device="cpu", on_step=stop_at_8)
    assert not (tmp_path / "resumed.safetensors").exists()
    resumed, report = train_on_shards(tmp_path / "acts", tmp_path / "resumed.safetensors", settings, device="cpu")
    assert report.resumed_from == 5
    for name, t in whole.tensors().items():
        assert torch.equal(resumed.tensors()[name], t), name


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    write_shards(tmp_path / "acts")
    _train(tmp_path, tokens=256 * 2, checkpoint_every=1)
    with pytest.raises(ValueError, match=r"checkpoint of other settings \(k 4 -> 8\)"):
        _train(tmp_path, tokens=256 * 2, k=8)


def test_corrupt_shard_stops_before_training(tmp_path):
    write_shards(tmp_path / "acts")
    (tmp_path / "acts" / "shard-00001.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="shard-00001.safetensors"):
        _train(tmp_path, tokens=512)
    assert not (tmp_path / "sae.safetensors").exists()
    assert not (tmp_path / "sae.safetensors.checkpoints").exists()


@pytest.mark.parametrize("overrides, message", [
    (dict(k=200), "k must be in 1..d_sae"), (dict(normalize="l2"), "normalize 'l2'"),
    (dict(tokens=100), "make no step"), (dict(streams=3), "multiple of streams")])
def test_bad_settings_are_clear_errors(tmp_path, overrides, message):
    write_shards(tmp_path / "acts")
    with pytest.raises(ValueError, match=message):
        _train(tmp_path, **overrides)


def test_input_shards_are_not_modified(tmp_path):
    write_shards(tmp_path / "acts")
    before = {p.name: p.read_bytes() for p in (tmp_path / "acts").iterdir()}
    _train(tmp_path, tokens=512)
    assert {p.name: p.read_bytes() for p in (tmp_path / "acts").iterdir()} == before
