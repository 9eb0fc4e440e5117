"""SAE Embedding Features: the listed features and values match a direct encode."""
import json

import pytest
import torch
from embedding_saes import DEAD, clip_vision_output, reference_encode, relu_sae, topk_sae

from comfyui_sae_steering.harness.tiny_flux import tiny_conditioning
from comfyui_sae_steering.nodes.embedding.features_node import SAEEmbeddingFeatures
from comfyui_sae_steering.nodes.steer.feature_spec import parse_features


def run(sae, target, top_n=16, conditioning=None, clip_vision_output=None):
    kwargs = {"conditioning": conditioning, "clip_vision_output": clip_vision_output}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # optional inputs left unconnected are absent
    table, values = SAEEmbeddingFeatures.execute(sae=sae, target=target, top_n=top_n, **kwargs).result
    return table, json.loads(values)


def expected_ranking(z, top_n):
    """Reference: rank by mean over vectors; frequency = share of vectors with z > 0; never-firing left out."""
    z = z.reshape(-1, z.shape[-1])
    mean, peak, fires = z.mean(0), z.amax(0), (z > 0).sum(0)
    order = [f for f in sorted(range(z.shape[-1]), key=lambda f: -float(mean[f])) if fires[f] > 0][:top_n]
    return [(f, float(mean[f]), float(peak[f]), int(fires[f])) for f in order], z.shape[0]


def assert_matches(values, z, top_n):
    ranking, vectors = expected_ranking(z, top_n)
    assert values["vectors"] == vectors
    assert [row["feature"] for row in values["features"]] == [f for f, *_ in ranking]
    for row, (f, mean, peak, fires) in zip(values["features"], ranking):
        assert row["mean"] == pytest.approx(mean, rel=1e-5, abs=1e-6)
        assert row["max"] == pytest.approx(peak, rel=1e-5, abs=1e-6)
        assert row["fires"] == fires and row["frequency"] == pytest.approx(fires / vectors)


def test_pooled_vector_listing_matches_encode():
    sae = relu_sae()
    conditioning = tiny_conditioning(seed=1)
    table, values = run(sae, "pooled_output", top_n=5, conditioning=conditioning)
    x = conditioning[0][1]["pooled_output"]
    assert_matches(values, reference_encode(sae, x), 5)
    # and the kernel's own encode gives the same top five, in the same order
    direct = sae.encode(x)[0]
    assert [row["feature"] for row in values["features"]] == direct.topk(5).indices.tolist()
    assert values["target"] == "pooled_output" and values["d_sae"] == 320
    first = values["features"][0]
    assert f"   1  {first['feature']:>8}  {first['mean']:>10.4g}" in table
    paste = table.splitlines()[-1]
    assert paste.startswith("features: ")
    assert [f for f, _ in parse_features(paste.removeprefix("features: "), 40.0, 320)] == \
        [row["feature"] for row in values["features"]]


def test_tokens_of_all_entries_are_ranked_by_mean_with_firing_frequency():
    sae = topk_sae()
    sae.chunk_tokens = 5  # 16 + 8 tokens: several chunks, the last one short
    conditioning = tiny_conditioning(seed=1, batch=2) + tiny_conditioning(seed=3)
    table, values = run(sae, "tokens", top_n=10, conditioning=conditioning)
    z = torch.cat([reference_encode(sae, entry[0]).reshape(-1, sae.d_sae) for entry in conditioning])
    assert_matches(values, z, 10)
    assert values["vectors"] == 24
    assert "24 vector(s)" in table and "/24 (" in table
    assert DEAD not in [row["feature"] for row in values["features"]]


def test_clip_vision_field_and_fewer_firing_features_than_top_n():
    sae = relu_sae(d_in=1280, d_sae=64)
    output = clip_vision_output(batch=2)
    _, values = run(sae, "last_hidden_state", top_n=1000, clip_vision_output=output)
    z = reference_encode(sae, output.last_hidden_state)
    assert_matches(values, z, 1000)
    assert len(values["features"]) == int(((z > 0).sum((0, 1)) > 0).sum()) < 64


def test_no_firing_feature_says_so():
    sae = relu_sae(d_in=1280, d_sae=64)
    output = clip_vision_output()
    output["image_embeds"] = torch.zeros(2, 1280)
    sae.b_enc.fill_(-1.0)
    table, values = run(sae, "image_embeds", clip_vision_output=output)
    assert values["features"] == [] and "no feature fires on these 2 vector(s)" in table


def test_inputs_missing_or_wrong_are_clear_errors():
    sae = relu_sae()
    with pytest.raises(ValueError, match="target 'tokens' reads the `conditioning` input, which is not connected"):
        run(sae, "tokens", clip_vision_output=clip_vision_output(width=768))
    with pytest.raises(ValueError, match="target 'image_embeds' reads the `clip_vision_output` input"):
        run(sae, "image_embeds", conditioning=tiny_conditioning())
    with pytest.raises(ValueError, match=r"conditioning entry 0 tokens is 64-d .* SAE reads 768-d"):
        run(sae, "tokens", conditioning=tiny_conditioning())
    with pytest.raises(ValueError, match="conditioning entry 0 has no 'pooled_output'"):
        run(sae, "pooled_output", conditioning=[[torch.zeros(1, 3, 768), {}]])
