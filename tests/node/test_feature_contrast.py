"""SAEFeatureContrast ("SAE Find Features") on the tiny FLUX, against statistics computed by hand.

The reference captures each set's image tokens independently (tests/flux_capture.py via the feature
scan tests' helper), encodes them densely and computes means, spreads and frequencies in float64 here.
"""
from __future__ import annotations

import json

import pytest
import torch

from comfyui_sae_steering.harness.tiny_flux import tiny_conditioning
from comfyui_sae_steering.nodes.extension import NODES
from comfyui_sae_steering.nodes.scan.feature_contrast_node import SAEFeatureContrast
from comfyui_sae_steering.sae import load_sae
from comfyui_sae_steering.sae.formats import pack
from comfyui_sae_steering.harness.sae_factory import random_sae
from test_feature_scan import LATENT, captured_image_tokens

STEPS, SEED = 2, 3


def find(model, sae, **overrides):
    inputs = dict(latent=LATENT, site="double.img.out", block=0, tokens="image", steps=STEPS, seed=SEED, cfg=1.0,
                  sampler_name="euler", scheduler="simple", top_n=6, rank_by="normalised difference", strength=1.0)
    inputs.update(overrides)
    return SAEFeatureContrast.execute(model=model, sae=sae, **inputs).result


@pytest.fixture(scope="module")
def sae():
    return random_sae(d_in=64, d_sae=128, k=8, seed=5)


def set_z(model, sae, conditionings):
    x = torch.cat([captured_image_tokens(model, "double.img.out", 0, c, steps=STEPS, seed=SEED).reshape(-1, 64)
                   for c in conditionings])
    return sae.encode(x).double()


def by_hand(za, zb, rank_by):
    mean_a, mean_b = za.mean(0), zb.mean(0)
    if rank_by == "frequency difference":
        return (za > 0).double().mean(0) - (zb > 0).double().mean(0)
    if rank_by == "mean difference":
        return mean_a - mean_b
    var_a, var_b = za.var(0, unbiased=False), zb.var(0, unbiased=False)
    return (mean_a - mean_b) / torch.sqrt((var_a + var_b) / 2 + 1e-12)


@pytest.mark.parametrize("rank_by", ["normalised difference", "frequency difference", "mean difference"])
def test_ranking_equals_the_hand_computed_statistics(tiny_flux, sae, rank_by):
    a = [tiny_conditioning(seed=1), tiny_conditioning(seed=4)]
    b = [tiny_conditioning(seed=2)]
    za, zb = set_z(tiny_flux, sae, a), set_z(tiny_flux, sae, b)
    score = by_hand(za, zb, rank_by)
    top = torch.sort(score, descending=True, stable=True).indices[:6].tolist()
    # set A: a connected conditioning plus a second one (here through the `concept` input of a second run)
    line, chart, report = find(tiny_flux, sae, concept=a[0], neutral=b[0], rank_by=rank_by,
                               concept_prompts="", neutral_prompts="")
    single = [int(e.split(":")[0]) for e in line.split(", ")]
    za1 = set_z(tiny_flux, sae, a[:1])
    expected_single = [f for f in torch.sort(by_hand(za1, zb, rank_by), descending=True, stable=True).indices[:6].tolist()
                       if by_hand(za1, zb, rank_by)[f] > 0]
    assert single == expected_single
    assert chart.shape[0] == 1 and chart.shape[-1] == 3 and report.startswith(f"features by {rank_by}")
    # both conditionings of set A pooled
    from comfyui_sae_steering.nodes.scan.contrast_sets import measure_sets
    from comfyui_sae_steering.nodes.sites.tap import TapSpec
    from comfyui_sae_steering.sae.contrast import contrast
    rec_a, rec_b = measure_sets(tiny_flux, sae, TapSpec("double.img.out", 0, apply_to="positive"), [a, b], LATENT,
                                STEPS, SEED, 1.0, "euler", "simple")
    result = contrast(rec_a.stats, rec_b.stats, 6, rank_by)
    assert result.features == top
    torch.testing.assert_close(torch.tensor(result.score, dtype=torch.float64), score[top], rtol=1e-4, atol=1e-6)


def test_strengths_are_the_concepts_mean_where_the_feature_fires(tiny_flux, sae):
    a, b = tiny_conditioning(seed=1), tiny_conditioning(seed=2)
    za, zb = set_z(tiny_flux, sae, [a]), set_z(tiny_flux, sae, [b])
    score = by_hand(za, zb, "normalised difference")
    active_mean = za.sum(0) / (za > 0).sum(0).clamp_min(1)
    line = find(tiny_flux, sae, concept=a, neutral=b, strength=2.0, top_n=3)[0]
    entries = [e.split(":") for e in line.split(", ")]
    top = torch.sort(score, descending=True, stable=True).indices[:3]
    assert [int(f) for f, _ in entries] == [int(f) for f in top if score[f] > 0]
    for f, s in entries:
        assert float(s) == pytest.approx(2.0 * float(active_mean[int(f)]), rel=1e-3)


def test_prompts_through_a_clip_equal_their_conditionings():
    """Tiny World's text encoder: prompts written in the node give what their encoded conditionings give."""
    from comfyui_sae_steering.nodes.tiny_world.loader_node import TinyWorldLoader
    model, clip, _, sae = TinyWorldLoader.execute().result
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    encode = lambda p: clip.encode_from_tokens_scheduled(clip.tokenize(p))  # noqa: E731
    common = dict(latent=latent, site="double.img.out", block=1, steps=2, top_n=5)
    by_prompts = find(model, sae, clip=clip, concept_prompts="a red circle\n\na red square", neutral_prompts="a blue circle",
                      **common)
    by_conditioning = find(model, sae, clip=clip, concept=encode("a red circle"), concept_prompts="a red square",
                           neutral=encode("a blue circle"), **common)
    assert by_prompts[0] == by_conditioning[0] and by_prompts[2] == by_conditioning[2]


@pytest.mark.parametrize("overrides,message", [
    (dict(neutral=tiny_conditioning(seed=2)), "^concept: the set is empty"),
    (dict(concept=tiny_conditioning(seed=1)), "^neutral: the set is empty"),
    (dict(concept=tiny_conditioning(seed=1), neutral_prompts="a cat"), "^neutral_prompts: 1 prompt.*no clip"),
    (dict(concept=tiny_conditioning(seed=1), neutral=tiny_conditioning(seed=2), write_label=True), "^label:"),
    (dict(concept=tiny_conditioning(seed=1), neutral=tiny_conditioning(seed=2), rank_by="biggest"), "rank_by"),
])
def test_bad_input_names_the_input(tiny_flux, sae, overrides, message):
    with pytest.raises(ValueError, match=message):
        find(tiny_flux, sae, **overrides)


def test_write_label_beside_the_sae(tiny_flux, sae, tmp_path):
    path = tmp_path / "mine.safetensors"
    pack.write(sae, path)
    (tmp_path / "mine.labels.json").write_text(json.dumps({"3": "kept"}))
    loaded = load_sae(path)
    a, b = tiny_conditioning(seed=1), tiny_conditioning(seed=2)
    line, _, report = find(tiny_flux, loaded, concept=a, neutral=b, label=" sparkle ", write_label=True)
    top = int(line.split(":")[0])
    assert json.loads((tmp_path / "mine.labels.json").read_text()) == {"3": "kept", str(top): "sparkle"}
    assert "sparkle" in report and load_sae(path).labels[top] == "sparkle"


def test_registered():
    assert SAEFeatureContrast in NODES
    schema = SAEFeatureContrast.define_schema()
    assert schema.node_id == "SAEFeatureContrast" and schema.display_name == "SAE Find Features"
