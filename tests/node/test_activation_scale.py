"""Measure Activation Scale on the tiny FLUX through real comfy.sample.sample, against numpy on
activations captured independently (plain torch hooks, tests/flux_capture.py)."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from comfyui_sae_steering.harness.tiny_flux import empty_latent, sample
from comfyui_sae_steering.nodes.measure.activation_scale_node import ALL_BLOCKS, SAEActivationScale
from comfyui_sae_steering.nodes.extension import NODES
from comfyui_sae_steering.nodes.sites.flux_sites import SITES
from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
from comfyui_sae_steering.sae.running_stats import QUANTILES
from flux_capture import Capture, hooks_left
from comfyui_sae_steering.harness.sae_factory import random_sae

LATENT = empty_latent(64, 64)  # 8x8 latent -> 16 image tokens; tiny_cond has 8 text tokens
IMG_TOKENS, TXT_TOKENS = 16, 8
DEAD = 5
KEYS = ["tokens", "mean", "std", "min", "max", "p25", "p50", "p75", "p95", "p99", "neg_frac",
        "norm_mean", "norm_std", "norm_max"]
SAE_KEYS = ["fvu", "cosine", "feature_frequency", "feature_mean", "feature_max"]


@pytest.fixture(scope="module")
def sae():
    return random_sae(d_in=64, d_sae=256, k=8, seed=3, dead=(DEAD,))


def measure(model, positive, negative, site="double.img.out", block=0, sae=None, steps=2, cfg=2.0, seed=11):
    return SAEActivationScale.execute(model=model, positive=positive, negative=negative, latent={"samples": LATENT},
                                      site=site, block=block, steps=steps, seed=seed, cfg=cfg, sampler_name="euler",
                                      scheduler="simple", sae=sae).result


def selected_tokens(site: str, captured: list[torch.Tensor]) -> np.ndarray:
    """[tokens, d] float64: what the node measures (image tokens; text streams: all text tokens)."""
    stream = SITES[site].stream
    pick = {"img": slice(0, IMG_TOKENS), "txt": slice(None), "joint": slice(TXT_TOKENS, TXT_TOKENS + IMG_TOKENS)}
    parts = [t[:, pick[stream]].reshape(-1, t.shape[-1]) for t in captured]
    return torch.cat(parts).double().numpy()


def measured_with_capture(model, positive, negative, sites, **kwargs):
    """Run the node once while plain hooks capture every listed (site, block) independently."""
    captures = [Capture(site, block, hidden=64) for site, block in sites]
    diffusion_model = model.get_model_object("diffusion_model")
    with contextlib.ExitStack() as stack:
        for capture in captures:
            stack.enter_context(capture.before_hooks(diffusion_model))
        result = measure(model, positive, negative, **kwargs)
    return result, captures


def check_against_numpy(summary: dict, stats, tokens: np.ndarray):
    values, norms = tokens.ravel(), np.linalg.norm(tokens, axis=1)
    assert summary["tokens"] == tokens.shape[0]
    np.testing.assert_allclose([summary[k] for k in ("mean", "std", "norm_mean", "norm_std", "norm_max")],
                               [values.mean(), values.std(), norms.mean(), norms.std(), norms.max()], rtol=1e-5)
    assert (summary["min"], summary["max"]) == (values.min(), values.max())
    assert summary["neg_frac"] == (values < 0).mean()
    for name, q in QUANTILES.items():  # within one histogram bin of numpy's
        assert abs(summary[name] - np.quantile(values, q)) <= stats.value_hist.width * (1 + 1e-6), name
    assert abs(stats.norm_quantiles([0.99])[0] - np.quantile(norms, 0.99)) <= stats.norm_hist.width * (1 + 1e-6)


@pytest.mark.parametrize("site,block", [("double.img.out", 1), ("double.txt.attn", 0), ("double.img.mlp", 1),
                                        ("single.out", 0), ("single.attn", 1)])
def test_one_site_matches_numpy(tiny_flux, tiny_cond, site, block):
    positive, negative = tiny_cond
    (scale, report, _), (capture,) = measured_with_capture(tiny_flux, positive, negative, [(site, block)],
                                                           site=site, block=block)
    key = f"{site}[{block}]"
    data = scale.to_dict()
    assert list(data) == [key] and list(data[key]) == KEYS
    per_row = {"img": IMG_TOKENS, "txt": TXT_TOKENS, "joint": IMG_TOKENS}[SITES[site].stream]
    assert data[key]["tokens"] == 2 * 2 * per_row  # 2 steps x (positive, negative) rows
    check_against_numpy(data[key], scale.sites[key].stats, selected_tokens(site, capture.before))
    assert key in report


def test_all_blocks_match_numpy(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    sites = [("double.img.out", 0), ("double.img.out", 1), ("single.out", 0), ("single.out", 1)]
    (scale, report, plot), captures = measured_with_capture(tiny_flux, positive, negative, sites, site=ALL_BLOCKS)
    data = scale.to_dict()
    assert list(data) == [f"{s}[{b}]" for s, b in sites]
    for (site, block), capture in zip(sites, captures):
        key = f"{site}[{block}]"
        assert list(data[key]) == KEYS
        check_against_numpy(data[key], scale.sites[key].stats, selected_tokens(site, capture.before))
        assert key in report
    assert plot.shape[0] == 1 and plot.shape[-1] == 3


def test_sae_stats_match_the_kernel(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    (scale, report, _), (capture,) = measured_with_capture(tiny_flux, positive, negative, [("single.out", 1)],
                                                           site="single.out", block=1, sae=sae)
    summary = scale.to_dict()["single.out[1]"]
    assert list(summary) == KEYS + SAE_KEYS
    x = torch.from_numpy(selected_tokens("single.out", capture.before))
    z = sae.encode(x.float()).double()
    x_hat = sae.reconstruct(x.float()).double()
    fired = (z > 0).sum(0).double()
    np.testing.assert_array_equal(summary["feature_frequency"], (fired / x.shape[0]).numpy())
    mean = torch.where(fired > 0, z.sum(0) / fired.clamp_min(1), torch.nan)
    np.testing.assert_allclose(summary["feature_mean"], mean.numpy(), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(summary["feature_max"], z.max(0).values.numpy(), rtol=1e-6)
    assert summary["feature_frequency"][DEAD] == 0 and np.isnan(summary["feature_mean"][DEAD])
    fvu = (x - x_hat).square().sum() / (x - x.mean(0)).square().sum()
    cosine = torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).mean()
    np.testing.assert_allclose([summary["fvu"], summary["cosine"]], [float(fvu), float(cosine)], rtol=1e-5)
    assert "FVU" in report and "single.out[1]" in report


def test_all_blocks_measures_the_sae_at_its_own_site(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    attn_sae = random_sae(d_in=64, d_sae=128, k=4, seed=2, hook="single_transformer_blocks.1.attn")
    scale, report, _ = measure(tiny_flux, positive, negative, site=ALL_BLOCKS, sae=attn_sae, steps=1)
    data = scale.to_dict()
    assert list(data)[-1] == "single.attn[1]" and "fvu" in data["single.attn[1]"]
    assert all("fvu" not in s for key, s in data.items() if key != "single.attn[1]")
    with pytest.raises(ValueError, match="metadata names no FLUX site"):
        measure(tiny_flux, positive, negative, site=ALL_BLOCKS, sae=random_sae(d_in=64, d_sae=32, k=4), steps=1)


@pytest.mark.parametrize("site", ["double.img.out", ALL_BLOCKS])
def test_plot_is_a_valid_image(tiny_flux, tiny_cond, site):
    positive, negative = tiny_cond
    _, _, plot = measure(tiny_flux, positive, negative, site=site, steps=1)
    assert plot.dim() == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3 and plot.shape[1] >= 200
    assert plot.dtype == torch.float32 and 0.0 <= float(plot.min()) and float(plot.max()) <= 1.0
    assert float(plot.std()) > 0.01  # something is drawn


def test_measuring_leaves_the_model_unpatched(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    diffusion_model = tiny_flux.get_model_object("diffusion_model")
    options = repr(tiny_flux.model_options)
    plain = sample(tiny_flux, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=6)
    measure(tiny_flux, positive, negative, site="single.attn", block=0, sae=sae)
    measure(tiny_flux, positive, negative, site=ALL_BLOCKS)
    assert hooks_left(diffusion_model) == []
    assert repr(tiny_flux.model_options) == options
    assert torch.equal(sample(tiny_flux, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=6), plain)


def steer(model, sae, **overrides):
    inputs = dict(site="double.img.out", block=1, tokens="image", features="3", strength=1.0, mode="add where active",
                  keep_error=True, start_percent=0.0, end_percent=1.0, apply_to="both")
    inputs.update(overrides)
    return SAEFluxSteer.execute(model=model, sae=sae, **inputs).result[0]


def fired_features(summary, n=2):
    return [f for f, freq in enumerate(summary["feature_frequency"]) if freq > 0][:n]


def test_strength_units_equal_the_multiplied_absolute_steer(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    scale, _, _ = measure(tiny_flux, positive, negative, site="double.img.out", block=1, sae=sae)
    summary = scale.to_dict()["double.img.out[1]"]
    a, b = fired_features(summary)
    run = lambda model: sample(model, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=9)  # noqa: E731
    relative = steer(tiny_flux, sae, features=f"{a}:1.5, {b}", strength=-0.5, mode="set", scale=scale,
                     strength_unit="× feature mean")
    absolute = steer(tiny_flux, sae, mode="set", features=f"{a}:{1.5 * summary['feature_mean'][a]!r}, "
                                                          f"{b}:{-0.5 * summary['feature_mean'][b]!r}")
    steered = run(relative)
    assert torch.equal(steered, run(absolute))
    relative = steer(tiny_flux, sae, features=f"{a}", strength=0.3, mode="add", scale=scale,
                     strength_unit="× token norm")
    absolute = steer(tiny_flux, sae, features=f"{a}:{0.3 * summary['norm_mean']!r}", mode="add")
    assert torch.equal(run(relative), run(absolute))
    # the units did something: an absolute steer with the unscaled strengths differs
    assert not torch.equal(steered, run(steer(tiny_flux, sae, features=f"{a}:1.5, {b}", strength=-0.5, mode="set")))


def test_strength_units_without_matching_statistics_are_refused(tiny_flux, tiny_cond, sae):
    positive, negative = tiny_cond
    with_sae, _, _ = measure(tiny_flux, positive, negative, site="double.img.out", block=1, sae=sae, steps=1)
    without_sae, _, _ = measure(tiny_flux, positive, negative, site="double.img.out", block=1, steps=1)
    cases = [
        (dict(strength_unit="× feature mean"), "needs the scale input"),
        (dict(scale=without_sae, strength_unit="× feature mean"), "needs SAE statistics at double.img.out\\[1\\]"),
        (dict(scale=with_sae, strength_unit="× token norm", block=0), "measured double.img.out\\[1\\]"),
        (dict(scale=with_sae, strength_unit="× feature mean", features=str(DEAD)), f"feature {DEAD} never fired"),
        (dict(scale=with_sae, strength_unit="× feature mean", mode="scale"), "mode 'scale'"),
        (dict(scale=with_sae, strength_unit="× feature mean", sae=random_sae(d_in=64, d_sae=128, k=4)),
         "256 features, this SAE has 128"),
    ]
    for overrides, message in cases:
        chosen = overrides.pop("sae", sae)
        with pytest.raises(ValueError, match=message):
            steer(tiny_flux, chosen, **overrides)


def test_a_zero_strength_needs_no_mean_so_it_may_name_a_feature_that_never_fired(tiny_flux, tiny_cond, sae):
    """"set red to 0" measured on a blue prompt: red never fired there, and 0 is 0 in every unit."""
    positive, negative = tiny_cond
    scale, _, _ = measure(tiny_flux, positive, negative, site="double.img.out", block=1, sae=sae, steps=1)
    (a,) = fired_features(scale.to_dict()["double.img.out[1]"], 1)
    run = lambda model: sample(model, positive, negative, latent=LATENT, steps=2, cfg=2.0, seed=9)  # noqa: E731
    relative = steer(tiny_flux, sae, features=f"{DEAD}:0, {a}:2", mode="set", scale=scale,
                     strength_unit="× feature mean")
    mean = scale.to_dict()["double.img.out[1]"]["feature_mean"][a]
    assert torch.equal(run(relative), run(steer(tiny_flux, sae, features=f"{DEAD}:0, {a}:{2 * mean!r}", mode="set")))


def test_node_contract():
    assert SAEActivationScale in NODES
    schema = SAEActivationScale.define_schema()
    assert schema.node_id == "SAEActivationScale" and schema.display_name == "Measure Activation Scale"
    assert [i.id for i in schema.inputs] == ["model", "positive", "negative", "latent", "site", "block", "steps",
                                             "seed", "cfg", "sampler_name", "scheduler", "sae"]
    optional = {i.id for i in schema.inputs if i.optional}
    assert optional == {"negative", "sae"}
    site = next(i for i in schema.inputs if i.id == "site")
    assert ALL_BLOCKS in site.options and "single.attn" in site.options
    steer_inputs = [i.id for i in SAEFluxSteer.define_schema().inputs]
    assert steer_inputs[12:14] == ["scale", "strength_unit"]  # later inputs (issue 15) come after, all optional
    assert steer_inputs[:12] == ["model", "sae", "site", "block", "tokens", "features", "strength", "mode",
                                 "keep_error", "start_percent", "end_percent", "apply_to"]


def test_auto_site_needs_an_sae(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    with pytest.raises(ValueError, match="no sae is connected"):
        measure(tiny_flux, positive, negative, site="auto")


def test_without_negative_at_cfg_one_with_progress(tiny_flux, tiny_cond, monkeypatch):
    """cfg 1 runs only the positive half; ComfyUI's progress bar hook hears every step."""
    import comfy.utils
    positive, _ = tiny_cond
    progress = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None:
                        progress.append((value, total)))
    scale, _, _ = measure(tiny_flux, positive, None, site="double.img.out", block=0, cfg=1.0, steps=3)
    assert scale.to_dict()["double.img.out[0]"]["tokens"] == 3 * IMG_TOKENS
    assert progress == [(1, 3), (2, 3), (3, 3)]


def test_report_suggests_strengths_by_the_readme_rule(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    sae = random_sae(d_in=64, d_sae=256, k=8, seed=4, unit_decoder=False)  # decoder norms enter the add range
    scale, report, _ = measure(tiny_flux, positive, negative, site="double.img.mlp", block=0, sae=sae, steps=1)
    s = scale.to_dict()["double.img.mlp[0]"]
    decoder = float(np.median(sae.W_dec.norm(dim=1).numpy()))
    typical = float(np.median([m for m in s["feature_mean"] if not np.isnan(m)]))
    add = (0.1 * s["norm_mean"] / decoder, s["norm_mean"] / decoder)
    assert f"add {add[0]:.4g} to {add[1]:.4g}" in report
    assert f"set {typical:.4g} to {4 * typical:.4g}" in report
