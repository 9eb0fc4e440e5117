"""The DiT families (SD3/3.5, Qwen-Image, Lumina2, Z-Image, Wan 2.1, Wan 2.2) and FLUX.2 / Chroma through the real
site nodes (SAE Steer, Measure Activation Scale, SAE Feature Scan, SAE Find Features, SAE Erase Concept) on tiny
models built as ComfyUI builds them, sampled with ``comfy.sample.sample``.

References are independent of the pack's taps: plain torch hooks on the same blocks (tests/dit_capture.py) give
each forward's block input and output and what the next block is given; the SAE maths on those tokens comes from
the kernel (``sae.steer``, a dense ``sae.encode``), statistics from numpy. What must not change is bit-identical."""
from __future__ import annotations

import contextlib
import math
import re

import pytest
import torch

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.harness.tiny_dit import tiny_dit_conditioning, tiny_dit_latent
from comfyui_sae_steering.harness.tiny_flux import empty_latent, tiny_conditioning
from comfyui_sae_steering.harness.tiny_unet import build_tiny_vae
from comfyui_sae_steering.nodes.measure.activation_scale_node import ALL_BLOCKS, SAEActivationScale
from comfyui_sae_steering.nodes.scan.feature_contrast_node import SAEFeatureContrast
from comfyui_sae_steering.nodes.scan.feature_scan_node import SAEFeatureScan
from comfyui_sae_steering.nodes.scan.heatmap_draw import SHEET_GAP, colorize, draw_heatmaps
from comfyui_sae_steering.nodes.scan.image_scan_node import SAEImageFeatureScan
from comfyui_sae_steering.nodes.sites import any_site
from comfyui_sae_steering.nodes.sites.choice import MAX_BLOCK
from comfyui_sae_steering.nodes.sites.flux_sites import SITE_NAMES
from comfyui_sae_steering.nodes.steer.concept_erase_node import SAEConceptErase
from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
from comfyui_sae_steering.nodes.steer.sae_steer_node import SAESteer
from comfyui_sae_steering.sae.erase import erase_deltas
from unet_capture import positive_rows
from dit_capture import (FAMILIES, FLUX_LIKE, block_io, blocks, edited_output, grid_of, image_tokens, new_record,
                         record_rows, run, site_of)
from flux_capture import hooks_left
from test_activation_scale import KEYS, SAE_KEYS, check_against_numpy
from test_feature_contrast import by_hand

ALL = list(FAMILIES) + list(FLUX_LIKE)  # every family the DiT row and the FLUX row (FLUX.2, Chroma) add
FAMILY = {name: entry[0] for name, entry in {**FAMILIES, **FLUX_LIKE}.items()}


def width(model) -> int:
    diffusion_model = model.get_model_object("diffusion_model")
    for attribute in ("hidden_size", "inner_dim", "dim"):  # FLUX / SD3, Qwen-Image, Lumina / Wan (ComfyUI's names)
        if isinstance(getattr(diffusion_model, attribute, None), int):
            return getattr(diffusion_model, attribute)
    raise AssertionError(f"no width on {type(diffusion_model).__name__}")


def steer(model, sae, site, block=0, **overrides):
    inputs = dict(tokens="image", features="0", strength=1.0, mode="add where active", keep_error=True,
                  start_percent=0.0, end_percent=1.0, apply_to="both")
    inputs.update(overrides)
    return SAESteer.execute(model=model, sae=sae, site=site, block=block, **inputs).result[0]


def latent(name):
    return {"samples": tiny_dit_latent(name)}


# -- SAE Steer ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("reads", ["out", "update"])
def test_sae_steer_edits_exactly_the_block_and_strength_zero_changes_nothing(tiny_dit, name, reads):
    model = tiny_dit(name)
    site = site_of(name, "img", reads)
    sae = random_sae(d_in=width(model), d_sae=64, k=6, seed=4)
    plain = run(model, name, steps=2)
    assert torch.equal(run(steer(model, sae, site, features="0, 1, 2", strength=0.0), name, steps=2), plain)
    assert torch.equal(run(steer(model, sae, site, features="3", scale=None, mode="scale", strength=1.0), name,
                           steps=2), plain)
    features = "0:2.0, 1:-1.5"
    patched = steer(model, sae, site, features=features, mode="add")
    with block_io(model, name, 0, "img", new_record()) as record:
        run(patched, name, steps=1)
    edits = edits_for(parse_features(features, 1.0), "add")
    tokens = image_tokens(name, record)
    assert len(record["io"]) == len(record["next"]) == 1
    (inp, out), flowed = record["io"][0], record["next"][0]
    expected = edited_output(inp, out, tokens, reads, lambda x: sae.steer(x, edits))
    torch.testing.assert_close(flowed, expected, rtol=1e-5, atol=1e-5)
    outside = torch.ones(out.shape[1], dtype=torch.bool)
    outside[tokens] = False
    assert torch.equal(flowed[:, outside], out[:, outside])  # Lumina's caption and padding: untouched
    assert not torch.equal(flowed, out)
    assert model.model_options["transformer_options"].get("patches_replace", {}) == {}  # the input MODEL
    assert hooks_left(model.get_model_object("diffusion_model")) == []


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("apply_to", ["positive", "negative"])
def test_sae_steer_edits_only_the_chosen_cfg_half(tiny_dit, name, apply_to):
    model = tiny_dit(name)
    sae = random_sae(d_in=width(model), d_sae=64, k=6, seed=4)
    patched = record_rows(steer(model, sae, site_of(name, "img", "out"), features="0:3.0", mode="add",
                                apply_to=apply_to), record := new_record())
    with block_io(model, name, 0, "img", record):
        run(patched, name)
    assert len(record["rows"]) == len(record["next"]) == 2
    for rows, (_, out), flowed in zip(record["rows"], record["io"], record["next"]):
        chosen = positive_rows(rows, out.shape[0]) == (apply_to == "positive")
        assert torch.equal((flowed != out).flatten(1).any(1), chosen)


def test_a_video_mask_steers_the_same_region_of_every_frame(tiny_dit):
    model = tiny_dit("WAN21_T2V")
    mask = torch.zeros(64, 64)
    mask[32:] = 1.0  # the bottom half of every frame
    patched = steer(model, random_sae(d_in=64, d_sae=64, k=6, seed=4), "blocks.update", features="0:3.0", mode="add",
                    mask=mask)
    with block_io(model, "WAN21_T2V", 0, "img", new_record()) as record:
        run(patched, "WAN21_T2V", steps=1)
    (_, out), flowed = record["io"][0], record["next"][0]
    changed = (flowed != out).any(-1).reshape(out.shape[0], *grid_of("WAN21_T2V"))  # rows, frames, h, w
    assert changed[:, :, 2:].all() and not changed[:, :, :2].any()


# -- Measure Activation Scale, and strengths in its units -----------------------------------------------------------
def measure(model, name, site, block, sae=None, steps=2):
    return SAEActivationScale.execute(model=model, positive=tiny_dit_conditioning(name, 1),
                                      negative=tiny_dit_conditioning(name, 2), latent=latent(name), site=site,
                                      block=block, steps=steps, seed=11, cfg=2.0, sampler_name="euler",
                                      scheduler="simple", sae=sae).result


def site_tokens(name, reads, record) -> torch.Tensor:
    """[tokens, width] of every forward and row the site read (image tokens, both CFG halves)."""
    tokens = image_tokens(name, record)
    return torch.cat([((out - inp) if reads == "update" else out)[:, tokens].reshape(-1, out.shape[-1])
                      for inp, out in record["io"]])


@pytest.mark.parametrize("name", ALL)
def test_measure_at_a_dit_site_and_steer_in_its_units(tiny_dit, name):
    model = tiny_dit(name)
    block = 1  # the site's key names its block
    site = site_of(name, "img", "update")
    sae = random_sae(d_in=width(model), d_sae=128, k=8, seed=3)
    with block_io(model, name, block, "img", new_record()) as record:
        scale, report, plot = measure(model, name, site, block, sae=sae)
    key = f"{site}[{block}]"
    data = scale.to_dict()
    assert list(data) == [key] and list(data[key]) == KEYS + SAE_KEYS
    tokens = site_tokens(name, "update", record)
    image = image_tokens(name, record)
    assert data[key]["tokens"] == 2 * 2 * (image.stop - image.start)  # 2 steps x (positive, negative) rows
    check_against_numpy(data[key], scale.sites[key].stats, tokens.double().numpy())
    z = sae.encode(tokens).double()
    fired = (z > 0).sum(0)
    torch.testing.assert_close(torch.tensor(data[key]["feature_mean"], dtype=torch.float64),
                               torch.where(fired > 0, z.sum(0) / fired.clamp_min(1), torch.nan), equal_nan=True)
    assert report.splitlines()[1].startswith(f"{key}: ") and plot.shape[-1] == 3
    a, b = [f for f, n in enumerate(fired.tolist()) if n > 0][:2]
    mean = data[key]["feature_mean"]
    relative = steer(model, sae, site, block, features=f"{a}:1.5, {b}", strength=-0.5, mode="set", scale=scale,
                     strength_unit="× feature mean")
    absolute = steer(model, sae, site, block, features=f"{a}:{1.5 * mean[a]!r}, {b}:{-0.5 * mean[b]!r}", mode="set")
    assert torch.equal(run(relative, name), run(absolute, name))
    relative = steer(model, sae, site, block, features=f"{a}", strength=0.3, mode="add", scale=scale,
                     strength_unit="× token norm")
    absolute = steer(model, sae, site, block, features=f"{a}:{0.3 * data[key]['norm_mean']!r}", mode="add")
    assert torch.equal(run(relative, name), run(absolute, name))
    with pytest.raises(ValueError, match=rf"needs statistics at {re.escape(site)}\[0\], but the scale measured "
                                         rf"{re.escape(key)}"):
        steer(model, sae, site, 0, features=f"{a}", scale=scale, strength_unit="× token norm")


@pytest.mark.parametrize("name", ["SD3", "Lumina2", "WAN21_T2V"])
def test_all_blocks_of_a_dit_and_the_sae_at_its_own_site(tiny_dit, name):
    model = tiny_dit(name)
    image_site = FAMILIES[name][2]
    count = len(blocks(model, name))
    sae = random_sae(d_in=width(model), d_sae=64, k=6, seed=2, hook=f"transformer.{image_site}.1.update")
    records = [new_record() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        for block, record in enumerate(records):
            stack.enter_context(block_io(model, name, block, "img", record))
        scale, report, plot = measure(model, name, ALL_BLOCKS, 0, sae=sae, steps=1)
    data = scale.to_dict()
    own = f"{image_site}.update[1]"
    assert list(data) == [f"{image_site}.out[{i}]" for i in range(count)] + [own]
    assert [s.label for s in scale.sites.values()] == [str(i) for i in range(count)] + [""]
    for block, record in enumerate(records):
        key = f"{image_site}.out[{block}]"
        check_against_numpy(data[key], scale.sites[key].stats, site_tokens(name, "out", record).double().numpy())
    assert list(data[own]) == KEYS + SAE_KEYS
    check_against_numpy(data[own], scale.sites[own].stats, site_tokens(name, "update", records[1]).double().numpy())
    assert plot.shape[0] == 1 and float(plot.std()) > 0.01


# -- SAE Feature Scan: a video's (frames, h, w) grid -----------------------------------------------------------------
def scan(model, sae, name, site, **overrides):
    inputs = dict(positive=tiny_dit_conditioning(name, 1), negative=tiny_dit_conditioning(name, 2), latent=latent(name),
                  site=site, block=0, tokens="image", steps=2, seed=3, cfg=2.0, sampler_name="euler",
                  scheduler="simple", top_n=5)
    inputs.update(overrides)
    return SAEFeatureScan.execute(model=model, sae=sae, **inputs).result


@pytest.mark.parametrize("name", ALL)
def test_feature_scan_at_a_dit_site_maps_every_image_position(tiny_dit, name):
    model = tiny_dit(name)
    sae = random_sae(d_in=width(model), d_sae=128, k=8, seed=3)
    with block_io(model, name, 0, "img", new_record()) as record:
        text, heatmaps, result = scan(record_rows(model.clone(), record), sae, name, site_of(name, "img", "out"))
    grid = grid_of(name)
    assert result.grid == grid and result.maps.shape == (5, *grid)
    tokens = image_tokens(name, record)
    positive = torch.cat([out[positive_rows(r, out.shape[0])][:, tokens] for r, (_, out) in zip(record["rows"],
                                                                                             record["io"])])
    z = sae.encode(positive.reshape(-1, positive.shape[-1])).double()  # cfg 2: only the positive rows count
    assert result.token_count == z.shape[0] == 2 * positive.shape[1]
    order = torch.sort(z.mean(0), descending=True, stable=True).indices[:5]
    assert result.features == order.tolist()
    maps = z.reshape(-1, positive.shape[1], sae.d_sae).mean(0)[:, order].T.reshape(5, *grid)
    torch.testing.assert_close(result.maps, maps.float(), rtol=1e-6, atol=1e-6)
    assert text.splitlines()[-1].startswith("features: ")
    # drawn at the size the VAE decodes the latent to: ComfyUI's EmptyFlux2LatentImage and Wan 2.2's latent
    # node make 1/16 of the image, every other family's empty latent 1/8
    side = tiny_dit_latent(name).shape[-1] * (16 if name in ("Flux2", "WAN22_T2V") else 8)
    if len(grid) == 3:  # a video: each feature's frames tiled on one sheet, ⌈√frames⌉ columns
        columns = math.ceil(math.sqrt(grid[0]))
        rows = math.ceil(grid[0] / columns)
        assert heatmaps.shape == (5, rows * side + (rows - 1) * SHEET_GAP, columns * side + (columns - 1) * SHEET_GAP, 3)
    else:
        assert heatmaps.shape == (5, side, side, 3)
    assert hooks_left(model.get_model_object("diffusion_model")) == []


def as_drawn(colours: torch.Tensor) -> torch.Tensor:
    """Colours as the labelled image holds them: 8 bits per channel (the label is drawn with PIL)."""
    return (colours * 255).round() / 255


def test_video_heatmaps_tile_the_frames_each_over_its_own_frame():
    """3 latent frames of a 9-frame video (Wan: 1 + 4k frames): tiles row by row on a 2 x 2 sheet, each scaled by the
    feature's maximum over all its frames, over video frames 0, 4 and 8; the fourth slot and the gaps stay black."""
    maps = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    maps[1, 2] = 0.0  # a feature silent in its last frame
    drawn = draw_heatmaps(maps, (32, 32), ["a", "b"])
    assert drawn.shape == (2, 32 * 2 + SHEET_GAP, 32 * 2 + SHEET_GAP, 3)
    peak = maps.flatten(1).amax(1).view(2, 1, 1, 1)  # one maximum per feature, over all its frames
    values = torch.nn.functional.interpolate((maps / peak).reshape(6, 1, 4, 4), size=(32, 32), mode="bilinear",
                                             align_corners=False).reshape(2, 3, 32, 32).clamp(0, 1)
    step = 32 + SHEET_GAP
    tile = lambda t: (slice(step * (t // 2), step * (t // 2) + 32), slice(step * (t % 2), step * (t % 2) + 32))  # noqa: E731
    below_label = slice(20, 32)
    for t in range(3):
        ys, xs = tile(t)
        torch.testing.assert_close(drawn[:, ys, xs][:, below_label], as_drawn(colorize(values[:, t]))[:, below_label],
                                   rtol=0, atol=1e-6)
    assert not drawn[:, 32:step].any() and not drawn[:, 20:, 32:step].any() and not drawn[:, step:, step:].any()
    video = torch.arange(9, dtype=torch.float32).div(10).view(9, 1, 1, 1).expand(9, 32, 32, 3)
    over = draw_heatmaps(torch.zeros(1, 3, 4, 4), (32, 32), ["silent"], video)  # opacity 0: the frames alone
    for t, frame in enumerate((0, 4, 8)):
        ys, xs = tile(t)
        torch.testing.assert_close(over[0, ys, xs][below_label], as_drawn(video[frame][below_label]), rtol=0, atol=1e-6)


def test_image_feature_scan_at_an_sd3_site(tiny_dit):
    model = tiny_dit("SD3")
    sae = random_sae(d_in=width(model), d_sae=128, k=8, seed=4)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    with block_io(model, "SD3", 1, "img", new_record()) as record:
        text, heatmaps, result = SAEImageFeatureScan.execute(
            model=model, sae=sae, image=image, vae=build_tiny_vae(latent_channels=16), positive=tiny_dit_conditioning(
                "SD3", 1), site="transformer_blocks.update", block=1, tokens="image", percent=0.5, seed=7,
            top_n=5).result
    assert len(record["io"]) == 1  # one forward, positive only
    z = sae.encode(site_tokens("SD3", "update", record)).double()
    assert result.features == torch.sort(z.mean(0), descending=True, stable=True).indices[:5].tolist()
    assert result.grid == (4, 4) and heatmaps.shape == (5, 64, 64, 3)


# -- SAE Find Features, SAE Erase Concept ----------------------------------------------------------------------------
def test_find_features_at_a_wan_site(tiny_dit):
    model = tiny_dit("WAN21_T2V")
    sae = random_sae(d_in=64, d_sae=128, k=8, seed=5)
    concept, neutral = tiny_dit_conditioning("WAN21_T2V", 1), tiny_dit_conditioning("WAN21_T2V", 4)
    with block_io(model, "WAN21_T2V", 0, "img", new_record()) as record:
        line, chart, report = SAEFeatureContrast.execute(
            model=model, sae=sae, latent=latent("WAN21_T2V"), site="blocks.out", block=0, tokens="image", steps=2,
            seed=3, cfg=1.0, sampler_name="euler", scheduler="simple", top_n=4, rank_by="mean difference",
            strength=1.0, concept=concept, neutral=neutral).result
    assert len(record["io"]) == 4  # 2 steps of the concept, then 2 of the neutral prompt (cfg 1: positive only)
    halves = ({"io": record["io"][:2], "caption": []}, {"io": record["io"][2:], "caption": []})
    za, zb = (sae.encode(site_tokens("WAN21_T2V", "out", half)).double() for half in halves)
    score = by_hand(za, zb, "mean difference")
    expected = [f for f in torch.sort(score, descending=True, stable=True).indices[:4].tolist() if score[f] > 0]
    assert [int(e.split(":")[0]) for e in line.split(", ")] == expected
    assert report.startswith("features by mean difference")


@pytest.mark.parametrize("name", ["QwenImage", "ZImage"])
def test_erase_concept_at_a_dit_site_is_the_kernels_erase_on_the_block(tiny_dit, name):
    model = tiny_dit(name)
    sae = random_sae(d_in=width(model), d_sae=64, k=8, seed=6)
    site = site_of(name, "img", "out")
    plain = run(model, name, steps=1)
    features = [0, 1, 2, 3]
    patched, report = SAEConceptErase.execute(
        model=model, sae=sae, site=site, block=0, tokens="image", features="0, 1, 2, 3", multiplier=1.0,
        push_to="zero", threshold="value", threshold_value=0.0, apply_to="both", top_n=4).result
    assert report.startswith(f"SAE Erase Concept at {site} block 0, both, per token:")
    with block_io(model, name, 0, "img", new_record()) as record:
        erased = run(patched, name, steps=1)
    (_, out), flowed = record["io"][0], record["next"][0]
    tokens = image_tokens(name, record)
    zero = torch.zeros(len(features))
    expected = edited_output(None, out, tokens, "out",
                             lambda x: sae.steer_by_rule(x, features, lambda z: erase_deltas(z, zero, zero)))
    torch.testing.assert_close(flowed, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(erased, plain)


# -- choices, auto, keys and one-line errors -------------------------------------------------------------------------
def test_every_site_node_offers_the_dit_sites_and_blocks_up_to_qwens():
    from comfyui_sae_steering.nodes.sites.dit_sites import dit_site_choices
    schema = SAESteer.define_schema()
    site = next(i for i in schema.inputs if i.id == "site")
    assert [o for o in site.options if o in dit_site_choices()] == dit_site_choices()
    assert next(i for i in schema.inputs if i.id == "block").max == MAX_BLOCK >= 59  # Qwen-Image: blocks 0-59
    assert any_site.site_key("transformer_blocks.update", 18) == "transformer_blocks.update[18]"
    assert any_site.describe_site("blocks.out", 3) == "blocks.out block 3"


@pytest.mark.parametrize("hook,name,expected", [
    ("transformer.transformer_blocks.1", "SD3", ("transformer_blocks.out", 1)),
    ("transformer.transformer_blocks.1", "QwenImage", ("transformer_blocks.out", 1)),
    ("transformer.transformer_blocks.1", "Flux2", ("double.img.out", 1)),  # FLUX.2: a double block
    ("transformer_blocks.1.update_context", "SD3", ("transformer_blocks.context.update", 1)),
    ("transformer_blocks.1.update_context", "Chroma", ("double.txt.update", 1)),
    ("model.diffusion_model.layers.2.update", "ZImage", ("layers.update", 2)),
    ("blocks.2", "WAN22_T2V", ("blocks.out", 2)),
    ("single_transformer_blocks.1", "Chroma", ("single.out", 1)),
])
def test_auto_reads_the_hook_in_the_models_family(tiny_dit, hook, name, expected):
    sae = random_sae(d_in=8, d_sae=16, k=4, hook=hook)
    assert any_site.resolve_site(tiny_dit(name), "auto", 0, sae) == expected


def test_auto_names_the_family_when_the_hook_is_none_of_its_sites(tiny_dit, tiny_flux):
    sae = random_sae(d_in=8, d_sae=16, k=4, hook="single_transformer_blocks.3")
    with pytest.raises(ValueError, match=r"^site is 'auto' but the SAE's metadata names no DiT site "
                                         r"\(hook='single_transformer_blocks.3'\); choose one of layers.out, "
                                         r"layers.update \(blocks 0-2\) and the block$"):
        any_site.resolve_site(tiny_dit("Lumina2"), "auto", 0, sae)
    with pytest.raises(ValueError, match=r"^site is 'auto' but the SAE's metadata names no FLUX site "
                                         r"\(hook='layers.update:2'\)"):
        any_site.resolve_site(tiny_flux, "auto", 0, random_sae(d_in=8, d_sae=16, k=4, hook="layers.update:2"))


def node_calls(model, sae, site, block, positive, latent_dict):
    sampling = dict(steps=1, seed=0, cfg=1.0, sampler_name="euler", scheduler="simple")
    return {
        "SAESteer": lambda: steer(model, sae, site, block, features="1", mode="add"),
        "SAEActivationScale": lambda: SAEActivationScale.execute(model=model, positive=positive, latent=latent_dict,
                                                                 site=site, block=block, sae=sae, **sampling),
        "SAEFeatureScan": lambda: SAEFeatureScan.execute(model=model, sae=sae, positive=positive, latent=latent_dict,
                                                         site=site, block=block, tokens="image", top_n=4, **sampling),
        "SAEFeatureContrast": lambda: SAEFeatureContrast.execute(
            model=model, sae=sae, latent=latent_dict, site=site, block=block, tokens="image", top_n=4,
            rank_by="mean difference", strength=1.0, concept=positive, neutral=positive, **sampling),
        "SAEConceptErase": lambda: SAEConceptErase.execute(
            model=model, sae=sae, site=site, block=block, tokens="image", features="1", multiplier=1.0,
            push_to="zero", threshold="value", threshold_value=0.0, apply_to="both", top_n=4),
    }


NODES = ["SAESteer", "SAEActivationScale", "SAEFeatureScan", "SAEFeatureContrast", "SAEConceptErase"]
FLUX_SITES = ", ".join(SITE_NAMES) + " (blocks: double 0-1, single 0-1)"
SD3_SITES = ("transformer_blocks.out, transformer_blocks.update, transformer_blocks.context.out, "
             "transformer_blocks.context.update (blocks 0-2)")


@pytest.mark.parametrize("node", NODES)
def test_a_dit_site_on_flux_and_a_flux_site_on_sd3_are_refused_in_one_line(tiny_dit, tiny_flux, node):
    sae = random_sae(d_in=64, d_sae=32, k=4)
    calls = node_calls(tiny_flux, sae, "transformer_blocks.out", 0, tiny_conditioning(seed=1),
                       {"samples": empty_latent(64, 64)})
    with pytest.raises(ValueError, match=rf"^site 'transformer_blocks.out' is a DiT site; this model \(family: FLUX.1\) "
                                         rf"has the FLUX sites {re.escape(FLUX_SITES)}$"):
        calls[node]()
    sd3 = tiny_dit("SD3")
    calls = node_calls(sd3, random_sae(d_in=128, d_sae=32, k=4), "double.img.out", 0, tiny_dit_conditioning("SD3", 1),
                       latent("SD3"))
    with pytest.raises(ValueError, match=rf"^site 'double.img.out' is a FLUX site; this model \(family: SD3/3.5\) has "
                                         rf"the DiT sites {re.escape(SD3_SITES)}$"):
        calls[node]()


@pytest.mark.parametrize("node", NODES)
def test_an_sae_of_another_width_names_both_widths_and_the_site(tiny_dit, node):
    calls = node_calls(tiny_dit("QwenImage"), random_sae(d_in=7, d_sae=32, k=4), "transformer_blocks.update", 2,
                       tiny_dit_conditioning("QwenImage", 1), latent("QwenImage"))
    with pytest.raises(ValueError, match=r"^the SAE reads 7-d activations but transformer_blocks.2 of this Qwen-Image "
                                         r"model is 64-d: load an SAE trained at this site$"):
        calls[node]()


def test_other_dit_mistakes_are_refused_in_one_line(tiny_dit):
    wan, sd3, flux2 = tiny_dit("WAN21_T2V"), tiny_dit("SD3"), tiny_dit("Flux2")
    sae = random_sae(d_in=64, d_sae=32, k=4)
    with pytest.raises(ValueError, match=r"^site 'transformer_blocks' is not in this Wan 2.1 model; it has blocks "
                                         r"\(each as .out or .update\)$"):
        steer(wan, sae, "transformer_blocks.out")
    with pytest.raises(ValueError, match=r"^block 3 is out of range for blocks of this Wan 2.1 model: it has 3 blocks "
                                         r"\(0..2\)$"):
        steer(wan, sae, "blocks.out", 3)
    with pytest.raises(ValueError, match=r"^site 'mid_block.attentions.0' is a UNet \(SD1.5/SDXL\) site; this model "
                                         r"\(family: Wan 2.1\) has the DiT sites blocks.out, blocks.update "
                                         r"\(blocks 0-2\)$"):
        steer(wan, sae, "mid_block.attentions.0")
    with pytest.raises(ValueError, match=r"^block 2 of this SD3/3.5 model has no context output"):
        steer(sd3, random_sae(d_in=128, d_sae=32, k=4), "transformer_blocks.context.out", 2)
    with pytest.raises(ValueError, match=r"^the SAE reads 7-d activations but this FLUX model's hidden size is 64 "
                                         r"\(site double.img.out, block 0\)"):
        steer(flux2, random_sae(d_in=7, d_sae=32, k=4), "double.img.out")
    with pytest.raises(ValueError, match=r"^site 'layers.out' is a DiT site; this model \(family: FLUX.2\) has the FLUX "
                                         r"sites "):
        steer(flux2, sae, "layers.out")
