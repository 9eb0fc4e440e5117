"""SAEFeatureScan on the tiny FLUX through real comfy.sample.sample, against captured activations.

Planted features: the site's activations are captured independently (tests/flux_capture.py); a
direction w (with bias b) is solved so that w·x + b = +1 on chosen tokens and -1 on all others
(fewer samples than unknowns: an exact fit), and the SAE's feature gets that encoder row times a
gain, so it fires at exactly those tokens. The other features are random and much weaker.
"""
from __future__ import annotations

import json

import pytest
import torch

import comfy.utils

from comfyui_sae_steering.harness.tiny_flux import empty_latent, sample, tiny_conditioning
from comfyui_sae_steering.nodes.extension import NODES
from comfyui_sae_steering.nodes.scan.feature_scan_node import SAEFeatureScan
from comfyui_sae_steering.sae import SparseAutoencoder
from flux_capture import Capture, hooks_left
from comfyui_sae_steering.harness.sae_factory import random_sae

LATENT = {"samples": empty_latent(64, 64)}  # 8x8 latent -> a 4x4 grid of 16 image tokens
GRID = (4, 4)
IMAGE_TOKENS = 16
D_SAE, K = 32, 4
PLANTED, GAIN = 7, 10.0
CHOSEN = [5, 6, 10]  # grid positions (row-major): (1,1), (1,2), (2,2); row 0 carries the label


def scan(model, sae, positive, **overrides):
    inputs = dict(site="double.img.out", block=0, tokens="image", steps=2, seed=3, cfg=1.0, sampler_name="euler",
                  scheduler="simple", top_n=8, latent=LATENT)
    inputs.update(overrides)
    return SAEFeatureScan.execute(model=model, sae=sae, positive=positive, **inputs).result


def captured_image_tokens(model, site, block, positive, negative=None, steps=2, cfg=1.0, seed=3):
    """Positive rows' image tokens of every forward at the site: [forwards, rows, 16, d], independently captured."""
    capture = Capture(site, block, hidden=64)
    target = model.clone()
    capture.add_after(target)
    with capture.before_hooks(model.get_model_object("diffusion_model")):
        sample(target, positive, negative, latent=LATENT["samples"], steps=steps, cfg=cfg, seed=seed)
    out = []
    for (cond_or_uncond, _, txt_len), x in zip(capture.forwards, capture.before):
        rows = torch.tensor(cond_or_uncond).repeat_interleave(x.shape[0] // len(cond_or_uncond)) == 0
        start = txt_len if site.startswith("single") else 0
        out.append(x[rows, start:start + IMAGE_TOKENS])
    return torch.stack(out)


def separating_direction(x: torch.Tensor, target: torch.Tensor):
    """(w, b) with x @ w + b = target exactly (x [n, d], n <= d + 1): min-norm least squares in fp64."""
    design = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.pinv(design) @ target.double()
    assert torch.allclose(design @ solution, target.double(), atol=1e-6), "the planted direction must fit exactly"
    return solution[:-1].float(), float(solution[-1])


def weak_sae(seed: int = 0):
    """Random, weak features (pre-activations ~0.1): they fire, but far below a planted one."""
    g = torch.Generator().manual_seed(seed)
    W_enc = torch.randn(D_SAE, 64, generator=g) * 0.01
    b_enc = torch.rand(D_SAE, generator=g) * 0.2
    W_dec = torch.nn.functional.normalize(torch.randn(D_SAE, 64, generator=g), dim=1)
    return W_enc, b_enc, W_dec, torch.zeros(64)


def build(W_enc, b_enc, W_dec, b_dec):
    return SparseAutoencoder(W_enc, b_enc, W_dec, b_dec, arch="topk", k=K)


def planted_sae(tokens: torch.Tensor, chosen: list[int]):
    """Feature PLANTED fires (value GAIN) on the ``chosen`` grid positions in every forward, nowhere else."""
    n_forwards = tokens.shape[0] * tokens.shape[1]
    flat = tokens.reshape(-1, 64)
    target = -torch.ones(n_forwards, IMAGE_TOKENS)
    target[:, chosen] = 1.0
    w, b = separating_direction(flat, target.flatten())
    W_enc, b_enc, W_dec, b_dec = weak_sae()
    W_enc[PLANTED], b_enc[PLANTED] = GAIN * w, GAIN * b
    return build(W_enc, b_enc, W_dec, b_dec)


@pytest.mark.parametrize("site,block", [("double.img.out", 0), ("single.out", 1)])
def test_planted_feature_found_first_and_its_heatmap_peaks_on_its_tokens(tiny_flux, tiny_cond, site, block):
    positive, _ = tiny_cond
    tokens = captured_image_tokens(tiny_flux, site, block, positive)
    sae = planted_sae(tokens, CHOSEN)
    z = sae.encode(tokens.reshape(-1, 64)).reshape(-1, IMAGE_TOKENS, D_SAE)[..., PLANTED]
    assert torch.all(z[:, CHOSEN] > GAIN - 0.01) and torch.all(z[:, [p for p in range(16) if p not in CHOSEN]] == 0)

    text, heatmaps, result = scan(tiny_flux, sae, positive, site=site, block=block)
    assert result.features[0] == PLANTED
    assert result.grid == GRID
    grid_map = result.maps[0].flatten()
    torch.testing.assert_close(grid_map, z.mean(0).float(), rtol=0, atol=1e-5)
    assert set(torch.topk(grid_map, len(CHOSEN)).indices.tolist()) == set(CHOSEN)
    assert text.splitlines()[2].split()[1] == str(PLANTED)

    # the heatmap image: brightest at the chosen tokens' cells (rows 1-3; row 0 holds the label)
    assert heatmaps.shape == (8, 64, 64, 3)
    brightness = heatmaps[0].sum(-1)
    centres = {r * 4 + c: float(brightness[16 * r + 8, 16 * c + 8]) for r in range(1, 4) for c in range(4)}
    low = max(v for p, v in centres.items() if p not in CHOSEN)
    assert min(centres[p] for p in CHOSEN) > low + 1.0


def test_numbers_equal_a_dense_computation_over_captured_activations(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    sae = random_sae(d_in=64, d_sae=256, k=8, seed=3)
    # cfg 2: the negative half runs and must not be counted
    text, heatmaps, result = scan(tiny_flux, sae, positive, negative=negative, cfg=2.0, steps=2, top_n=10)
    tokens = captured_image_tokens(tiny_flux, "double.img.out", 0, positive, negative, steps=2, cfg=2.0)
    z = sae.encode(tokens.reshape(-1, 64)).double()  # dense [forwards * rows * 16, d_sae]
    mean, freq, peak = z.mean(0), (z > 0).double().mean(0), z.amax(0)
    order = torch.sort(mean, descending=True, stable=True).indices[:10]
    assert result.features == order.tolist()
    torch.testing.assert_close(torch.tensor(result.mean, dtype=torch.float64), mean[order])
    torch.testing.assert_close(torch.tensor(result.frequency, dtype=torch.float64), freq[order])
    torch.testing.assert_close(torch.tensor(result.max, dtype=torch.float64), peak[order])
    assert result.token_count == z.shape[0] == 2 * IMAGE_TOKENS  # 2 steps x 1 positive row x 16 tokens
    maps = z.reshape(-1, IMAGE_TOKENS, 256).mean(0)[:, order].T.reshape(10, *GRID)
    torch.testing.assert_close(result.maps, maps.float(), rtol=1e-6, atol=1e-6)

    # the table shows the same numbers (to its printed precision) and the paste line
    rows = text.splitlines()[2:12]
    for r, line in enumerate(rows):
        rank, feature, m, f, x = line.split()
        assert (int(rank), int(feature)) == (r + 1, int(order[r]))
        for shown, true in ((m, mean), (f, freq), (x, peak)):
            assert float(shown) == pytest.approx(float(true[order[r]]), rel=1e-4, abs=1e-4)
    expected_line = ", ".join(str(int(f)) for f in order if mean[f] > 0)
    assert text.splitlines()[-1] == f"features: {expected_line}" == f"features: {result.steer_line()}"
    as_dict = json.loads(json.dumps(result.to_dict()))  # plain, JSON-ready numbers
    assert as_dict["features"] == order.tolist() and as_dict["token_count"] == 2 * IMAGE_TOKENS
    assert as_dict["maps"] == result.maps.tolist() and as_dict["site"] == "double.img.out"


def test_contrast_ranks_positive_only_feature_above_shared_one(tiny_flux):
    positive, contrast = tiny_conditioning(seed=1), tiny_conditioning(seed=9)
    only_positive, shared = 5, 9
    pos_tokens = captured_image_tokens(tiny_flux, "double.img.out", 0, positive, steps=1).reshape(-1, 64)
    con_tokens = captured_image_tokens(tiny_flux, "double.img.out", 0, contrast, steps=1).reshape(-1, 64)
    w, b = separating_direction(torch.cat([pos_tokens, con_tokens]),
                                torch.cat([torch.ones(len(pos_tokens)), -torch.ones(len(con_tokens))]))
    W_enc, b_enc, W_dec, b_dec = weak_sae(seed=1)
    W_enc[only_positive], b_enc[only_positive] = 2.0 * w, 2.0 * b   # 2 on positive tokens, 0 on contrast
    W_enc[shared], b_enc[shared] = 0.0, 5.0                          # 5 everywhere
    sae = build(W_enc, b_enc, W_dec, b_dec)

    _, _, plain = scan(tiny_flux, sae, positive, steps=1)
    assert plain.features[:2] == [shared, only_positive]
    progress = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: progress.append((value, total)))
    try:
        text, heatmaps, contrasted = scan(tiny_flux, sae, positive, steps=1, contrast=contrast, top_n=D_SAE)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert progress == [(1, 2), (2, 2)]  # one step of each sampling
    assert contrasted.features[0] == only_positive
    assert contrasted.features.index(only_positive) < contrasted.features.index(shared)
    assert contrasted.difference[contrasted.features.index(shared)] == 0.0
    # the numbers: dense reference on both captures
    z_pos, z_con = sae.encode(pos_tokens).double(), sae.encode(con_tokens).double()
    diff = z_pos.mean(0) - z_con.mean(0)
    order = torch.sort(diff, descending=True, stable=True).indices
    assert contrasted.features == order.tolist()
    torch.testing.assert_close(torch.tensor(contrasted.contrast_mean, dtype=torch.float64), z_con.mean(0)[order])
    torch.testing.assert_close(torch.tensor(contrasted.difference, dtype=torch.float64), diff[order])
    assert "contrast" in text.splitlines()[1] and "diff" in text.splitlines()[1]
    assert heatmaps.shape[0] == D_SAE


def test_heatmaps_are_valid_images_over_the_given_image(tiny_flux, tiny_cond):
    positive, _ = tiny_cond
    sae = random_sae(d_in=64, d_sae=256, k=8, seed=4)
    image = torch.rand(2, 48, 80, 3, generator=torch.Generator().manual_seed(0))
    image_before = image.clone()
    _, heatmaps, result = scan(tiny_flux, sae, positive, top_n=5, steps=1, image=image)
    assert heatmaps.shape == (5, 48, 80, 3) and heatmaps.dtype == torch.float32
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert torch.equal(image, image_before)
    # where a feature's map is zero around a cell, the first image shows through unchanged
    for n, grid_map in enumerate(result.maps):
        for r in range(1, 4):
            for c in range(4):
                around = grid_map[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
                if torch.all(around == 0):
                    y, x = 12 * r + 6, 20 * c + 10
                    torch.testing.assert_close(heatmaps[n, y, x], image[0, y, x], rtol=0, atol=1 / 255)
    _, plain, _ = scan(tiny_flux, sae, positive, top_n=300, steps=1)  # top_n beyond d_sae: all features
    assert plain.shape == (256, 64, 64, 3)


def test_model_and_inputs_untouched_and_no_hooks_left(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    diffusion_model = tiny_flux.get_model_object("diffusion_model")
    options_before = repr(tiny_flux.model_options)
    latent_before = LATENT["samples"].clone()
    plain = sample(tiny_flux, positive, negative, latent=LATENT["samples"], steps=2, cfg=2.0, seed=6)
    sae = random_sae(d_in=64, d_sae=256, k=8, seed=3)
    for site, block, contrast in [("double.img.out", 0, negative), ("double.img.attn", 1, None), ("single.attn", 0, None)]:
        scan(tiny_flux, sae, positive, negative=negative, site=site, block=block, cfg=2.0, steps=1, contrast=contrast)
        assert hooks_left(diffusion_model) == []
    assert repr(tiny_flux.model_options) == options_before
    assert torch.equal(LATENT["samples"], latent_before)
    assert torch.equal(sample(tiny_flux, positive, negative, latent=LATENT["samples"], steps=2, cfg=2.0, seed=6), plain)


def test_text_tokens_have_numbers_but_no_map(tiny_flux, tiny_cond):
    positive, _ = tiny_cond
    sae = random_sae(d_in=64, d_sae=256, k=8, seed=3)
    _, heatmaps, result = scan(tiny_flux, sae, positive, site="single.out", block=0, tokens="text", steps=1)
    assert result.token_count == 8  # tiny_cond has 8 text tokens
    assert torch.all(result.maps == 0) and heatmaps.shape == (8, 64, 64, 3)


def test_wrong_width_sae_is_refused_with_sizes(tiny_flux, tiny_cond):
    positive, _ = tiny_cond
    with pytest.raises(ValueError, match="32-d.*hidden size is 64"):
        scan(tiny_flux, random_sae(d_in=32, d_sae=64, k=4), positive)


def test_schema_inputs_and_outputs_are_the_contract():
    schema = SAEFeatureScan.define_schema()
    assert schema.node_id == "SAEFeatureScan" and schema.display_name == "SAE Feature Scan"
    assert [i.id for i in schema.inputs] == [
        "model", "sae", "positive", "negative", "latent", "site", "block", "tokens", "steps", "seed", "cfg",
        "sampler_name", "scheduler", "top_n", "contrast", "image"]
    optional = {i.id for i in schema.inputs if i.optional}
    assert optional == {"negative", "contrast", "image"}
    assert [o.io_type for o in schema.outputs] == ["STRING", "IMAGE", "SAE_SCAN"]
    assert [i.default for i in schema.inputs if i.id == "top_n"] == [16]
    assert SAEFeatureScan in NODES
