"""Measure Activation Scale, SAE Feature Scan (prompt and image), SAE Find Features and the measured strength
units at SD1.5 / SDXL spatial transformers, on tiny UNets built as ComfyUI builds them, through real sampling.

References are independent of the pack's taps: plain torch hooks on the same module (tests/unet_capture.py)
give the tokens; statistics come from numpy, SAE codes from a dense ``sae.encode``."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.harness.tiny_flux import sample
from comfyui_sae_steering.harness.tiny_unet import build_tiny_vae, tiny_unet_conditioning
from comfyui_sae_steering.nodes.measure.activation_scale_node import ALL_BLOCKS, SAEActivationScale
from comfyui_sae_steering.nodes.scan.feature_contrast_node import SAEFeatureContrast
from comfyui_sae_steering.nodes.scan.feature_scan_node import SAEFeatureScan
from comfyui_sae_steering.nodes.scan.image_scan_node import SAEImageFeatureScan
from comfyui_sae_steering.nodes.sites.unet_sites import unet_sites
from comfyui_sae_steering.nodes.steer.sae_steer_node import SAESteer
from flux_capture import hooks_left
from test_activation_scale import KEYS, SAE_KEYS, check_against_numpy
from test_feature_contrast import by_hand
from unet_capture import module_io, positive_rows, site_module, site_tokens, with_rows_recorded

LATENT = {"samples": torch.zeros(1, 4, 8, 8)}
WIDE = {"samples": torch.zeros(1, 4, 8, 12)}  # non-square: level grids 8x12 and 4x6
conditioning = tiny_unet_conditioning


@pytest.fixture
def unet(tiny_unet):
    return tiny_unet


def width(model, site):
    return site_module(model.get_model_object("diffusion_model"), site).in_channels


def measure(model, family, site, block=0, sae=None, steps=2, cfg=2.0):
    return SAEActivationScale.execute(model=model, positive=conditioning(family, 1), negative=conditioning(family, 2),
                                      latent=LATENT, site=site, block=block, steps=steps, seed=11, cfg=cfg,
                                      sampler_name="euler", scheduler="simple", sae=sae).result


def flat(site, captured) -> torch.Tensor:
    """[tokens, channels] of every forward and row the site read (both CFG halves)."""
    return torch.cat([site_tokens(site, i, o).reshape(-1, o.shape[1]) for i, o in captured])


@pytest.mark.parametrize("site", ["down_blocks.1.attentions.0", "mid_block.attentions.0.update",
                                  "up_blocks.1.attentions.1.update"])
def test_measure_at_a_unet_site_equals_a_hook_on_the_module(unet, site):
    family, model = unet
    with module_io(model, site, captured := []):
        scale, report, plot = measure(model, family, site, block=5)  # block: the name says it, ignored
    data = scale.to_dict()
    assert list(data) == [site] and list(data[site]) == KEYS  # keyed by the name alone
    h, w = captured[0][1].shape[-2:]
    assert data[site]["tokens"] == 2 * 2 * h * w  # 2 steps x (positive, negative) rows x the level's grid
    check_against_numpy(data[site], scale.sites[site].stats, flat(site, captured).double().numpy())
    assert report.splitlines()[1].startswith(f"{site}: ")
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and float(plot.std()) > 0.01
    assert hooks_left(model.get_model_object("diffusion_model")) == []


def test_all_blocks_of_a_unet_and_the_sae_at_its_own_update_site(unet):
    family, model = unet
    diffusion_model = model.get_model_object("diffusion_model")
    names = list(unet_sites(diffusion_model))
    own = "mid_block.attentions.0.update"
    sae = random_sae(d_in=width(model, own), d_sae=128, k=8, seed=2, hook="unet.mid_block.attentions.0.update")
    captures = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(module_io(model, name, captures[name]))
        scale, report, plot = measure(model, family, ALL_BLOCKS, sae=sae, steps=1)
    data = scale.to_dict()
    assert list(data) == names + [own]
    assert [s.label for s in scale.sites.values()] == ["D0.0", "D1.0", "M", "U0.0", "U0.1", "U1.0", "U1.1", ""]
    for name in names:
        assert list(data[name]) == KEYS
        check_against_numpy(data[name], scale.sites[name].stats, flat(name, captures[name]).double().numpy())
    assert list(data[own]) == KEYS + SAE_KEYS
    check_against_numpy(data[own], scale.sites[own].stats, flat(own, captures["mid_block.attentions.0"]).double().numpy())
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and float(plot.std()) > 0.01
    with pytest.raises(ValueError, match=r"names no UNet \(SD1.5/SDXL\) site \(hook='transformer_blocks.3'\)"):
        measure(model, family, ALL_BLOCKS, sae=random_sae(d_in=64, d_sae=32, k=4, hook="transformer_blocks.3"), steps=1)


def steer(model, sae, site, **overrides):
    inputs = dict(block=0, tokens="image", strength=1.0, mode="add where active", keep_error=True, start_percent=0.0,
                  end_percent=1.0, apply_to="both", site=site)
    inputs.update(overrides)
    return SAESteer.execute(model=model, sae=sae, **inputs).result[0]


def test_a_measured_unet_scale_gives_the_absolute_strength_in_sae_steer(unet):
    family, model = unet
    site = "up_blocks.0.attentions.1.update"
    sae = random_sae(d_in=width(model, site), d_sae=256, k=8, seed=3)
    with module_io(model, site, captured := []):
        scale, _, _ = measure(model, family, site, block=3, sae=sae)
    summary = scale.to_dict()[site]
    # the feature means against the kernel on the hooked tokens
    z = sae.encode(flat(site, captured)).double()
    fired = (z > 0).sum(0)
    np.testing.assert_allclose(summary["feature_mean"], torch.where(fired > 0, z.sum(0) / fired.clamp_min(1),
                                                                    torch.nan).numpy(), rtol=1e-6, equal_nan=True)
    a, b = [f for f, freq in enumerate(summary["feature_frequency"]) if 0 < freq][:2]
    run = lambda m: sample(m, conditioning(family, 1), conditioning(family, 2), latent=LATENT["samples"],  # noqa: E731
                           steps=2, cfg=2.0, seed=9)
    mean = summary["feature_mean"]
    relative = steer(model, sae, site, features=f"{a}:1.5, {b}", strength=-0.5, mode="set", scale=scale,
                     strength_unit="× feature mean")  # block 0 here, 3 when measured: the name is the site
    absolute = steer(model, sae, site, mode="set", features=f"{a}:{1.5 * mean[a]!r}, {b}:{-0.5 * mean[b]!r}")
    steered = run(relative)
    assert torch.equal(steered, run(absolute))
    assert not torch.equal(steered, run(steer(model, sae, site, features=f"{a}:1.5, {b}", strength=-0.5, mode="set")))
    relative = steer(model, sae, site, features=f"{a}", strength=0.3, mode="add", scale=scale,
                     strength_unit="× token norm")
    absolute = steer(model, sae, site, features=f"{a}:{0.3 * summary['norm_mean']!r}", mode="add")
    assert torch.equal(run(relative), run(absolute))
    with pytest.raises(ValueError, match=r"needs statistics at up_blocks.0.attentions.1, but the scale measured "
                                         r"up_blocks.0.attentions.1.update"):
        steer(model, sae, "up_blocks.0.attentions.1", features=f"{a}", scale=scale, strength_unit="× token norm")


def scan(model, sae, family, site, latent=WIDE, **overrides):
    inputs = dict(positive=conditioning(family, 1), negative=conditioning(family, 2), latent=latent, site=site,
                  block=0, tokens="image", steps=2, seed=3, cfg=2.0, sampler_name="euler", scheduler="simple", top_n=6)
    inputs.update(overrides)
    return SAEFeatureScan.execute(model=model, sae=sae, **inputs).result


def centre_brightness(image: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[h, w] brightness (sum of RGB) at the centre pixel of each token cell of a heatmap [H, W, 3]."""
    h, w = grid
    ys = [int((r + 0.5) * image.shape[0] / h) for r in range(h)]
    xs = [int((c + 0.5) * image.shape[1] / w) for c in range(w)]
    return image.sum(-1)[ys][:, xs]


@pytest.mark.parametrize("site", ["down_blocks.1.attentions.0", "up_blocks.1.attentions.1.update"])
def test_feature_scan_at_a_unet_site_and_its_heatmaps_on_the_levels_grid(unet, site):
    family, model = unet
    sae = random_sae(d_in=width(model, site), d_sae=128, k=8, seed=3)
    rows = []
    with module_io(model, site, captured := []):
        text, heatmaps, result = scan(with_rows_recorded(model, rows), sae, family, site)
    grid = tuple(captured[0][1].shape[-2:])
    assert grid in ((4, 6), (8, 12)) and result.grid == grid  # the level's own, non-square grid
    positive = torch.cat([site_tokens(site, i, o)[positive_rows(r, o.shape[0])] for r, (i, o) in zip(rows, captured)])
    z = sae.encode(positive.reshape(-1, positive.shape[-1])).double()  # cfg 2: only the positive rows count
    assert result.token_count == z.shape[0] == 2 * grid[0] * grid[1]
    mean = z.mean(0)
    order = torch.sort(mean, descending=True, stable=True).indices[:6]
    assert result.features == order.tolist()
    torch.testing.assert_close(torch.tensor(result.mean, dtype=torch.float64), mean[order])
    maps = z.reshape(-1, grid[0] * grid[1], sae.d_sae).mean(0)[:, order].T.reshape(6, *grid)
    torch.testing.assert_close(result.maps, maps.float(), rtol=1e-6, atol=1e-6)
    assert result.meta["site"] == site and text.splitlines()[-1].startswith("features: ")
    # the drawing: the latent's image size (8x12 latent -> 64x96 px); brighter cells where the map is larger
    assert heatmaps.shape == (6, 64, 96, 3)
    compared = 0
    for drawn, grid_map in zip(heatmaps, result.maps):
        bright = centre_brightness(drawn, grid)
        below_label = slice(grid[0] // 2, None)  # the label box sits in the top-left corner
        values, seen = grid_map[below_label].flatten(), bright[below_label].flatten()
        clearly_larger = values[:, None] > values[None, :] + 0.25 * float(grid_map.max())
        assert bool((seen[:, None] > seen[None, :])[clearly_larger].all())
        compared += int(clearly_larger.sum())
    assert compared > 0
    assert hooks_left(model.get_model_object("diffusion_model")) == []


def test_image_feature_scan_at_a_unet_site(unet):
    family, model = unet
    site = "up_blocks.1.attentions.0"
    sae = random_sae(d_in=width(model, site), d_sae=128, k=8, seed=4)
    image = torch.rand(1, 64, 96, 3, generator=torch.Generator().manual_seed(0))
    with module_io(model, site, captured := []):
        text, heatmaps, result = SAEImageFeatureScan.execute(
            model=model, sae=sae, image=image, vae=build_tiny_vae(), positive=conditioning(family, 1), site=site,
            block=0, tokens="image", percent=0.5, seed=7, top_n=5).result
    assert len(captured) == 1  # one forward, positive only
    inp, out = captured[0]
    z = sae.encode(site_tokens(site, inp, out).reshape(-1, out.shape[1])).double()
    order = torch.sort(z.mean(0), descending=True, stable=True).indices[:5]
    assert result.features == order.tolist() and result.grid == (8, 12)
    assert heatmaps.shape == (5, 64, 96, 3)


def test_find_features_at_a_unet_site(unet):
    family, model = unet
    site = "mid_block.attentions.0"
    sae = random_sae(d_in=width(model, site), d_sae=128, k=8, seed=5)
    concept, neutral = conditioning(family, 1), conditioning(family, 4)
    with module_io(model, site, captured := []):
        line, chart, report = SAEFeatureContrast.execute(
            model=model, sae=sae, latent=LATENT, site=site, block=0, tokens="image", steps=2, seed=3, cfg=1.0,
            sampler_name="euler", scheduler="simple", top_n=4, rank_by="mean difference", strength=1.0,
            concept=concept, neutral=neutral).result
    assert len(captured) == 4  # 2 steps of the concept, then 2 of the neutral prompt (cfg 1: positive only)
    za, zb = (sae.encode(flat(site, part)).double() for part in (captured[:2], captured[2:]))
    score = by_hand(za, zb, "mean difference")
    expected = [f for f in torch.sort(score, descending=True, stable=True).indices[:4].tolist() if score[f] > 0]
    assert [int(e.split(":")[0]) for e in line.split(", ")] == expected
    assert chart.shape[0] == 1 and report.startswith("features by mean difference")
