"""SAE Edit Conditioning: Gytis Daujotas's recipe on a conditioning, untouched inputs, real FLUX sampling."""
import pytest
import sae_layouts
import torch
from embedding_saes import DEAD, gytis_recipe, reference_encode, relu_sae, topk_sae

from comfyui_sae_steering.harness.tiny_flux import sample, tiny_conditioning
from comfyui_sae_steering.nodes.embedding.conditioning_edit_node import SAEConditioningEdit
from comfyui_sae_steering.sae import load_sae


def run(conditioning, sae, target="pooled_output", features="5", strength=40.0, mode="set", keep_error=True):
    return SAEConditioningEdit.execute(conditioning=conditioning, sae=sae, target=target, features=features,
                                       strength=strength, mode=mode, keep_error=keep_error).result


def snapshot(conditioning):
    return [[entry[0].clone(), {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in entry[1].items()}]
            for entry in conditioning]


def assert_unchanged(conditioning, saved):
    for entry, (tokens, options) in zip(conditioning, saved, strict=True):
        assert torch.equal(entry[0], tokens)
        assert entry[1].keys() == options.keys()
        for key, value in options.items():
            assert torch.equal(entry[1][key], value) if isinstance(value, torch.Tensor) else entry[1][key] == value


def active_and_inactive(sae, x):
    z = reference_encode(sae, x)[0]
    return int(z.argmax()), int((z == 0).nonzero()[-1])


def test_pooled_set_to_40_is_gytis_recipe():
    sae = relu_sae()
    conditioning = tiny_conditioning(seed=1)
    x = conditioning[0][1]["pooled_output"]
    for feature in active_and_inactive(sae, x):
        edited, text = run(conditioning, sae, features=str(feature))
        y = edited[0][1]["pooled_output"]
        expected = gytis_recipe(sae, x, feature, 40.0)
        assert y.dtype == torch.float32 and y.shape == x.shape
        torch.testing.assert_close(y.double(), expected, rtol=0, atol=1e-4)
        # only feature f moved: the change lies along its decoder row d_f, (40 − z_f)·d_f
        z_f = float(reference_encode(sae, x)[0, feature])
        torch.testing.assert_close((y.double() - x.double())[0], (40.0 - z_f) * sae.W_dec[feature].double(),
                                   rtol=0, atol=1e-4)
        state = "active" if z_f > 0 else "inactive"
        assert f"entry 0, item 0: feature {feature}: {z_f:.4g} -> 40 ({state})" in text


def test_without_keep_error_the_output_is_the_reconstruction():
    sae = relu_sae()
    conditioning = tiny_conditioning(seed=1)
    x = conditioning[0][1]["pooled_output"]
    edited, _ = run(conditioning, sae, features="7", strength=25.0, keep_error=False)
    torch.testing.assert_close(edited[0][1]["pooled_output"].double(), gytis_recipe(sae, x, 7, 25.0, keep_error=False),
                               rtol=0, atol=1e-4)


def test_tokens_of_every_entry_and_batch_item_are_edited():
    sae = topk_sae()  # 64-d: the tiny FLUX's token width
    conditioning = tiny_conditioning(seed=1, batch=2) + tiny_conditioning(seed=2, batch=2)
    saved = snapshot(conditioning)
    edited, text = run(conditioning, sae, target="tokens", features="11, 20:-15", strength=30.0)
    assert len(edited) == 2
    for entry, new in zip(conditioning, edited):
        x = entry[0]
        expected = gytis_recipe(sae, x, 11, 30.0)
        z = reference_encode(sae, x)
        expected = expected + (-15.0 - z[..., 20:21]) * sae.W_dec[20].double()
        torch.testing.assert_close(new[0].double(), expected, rtol=0, atol=1e-4)
        assert new[1]["pooled_output"] is entry[1]["pooled_output"]
    assert_unchanged(conditioning, saved)
    for i in range(2):
        for item in range(2):
            assert f"entry {i}, item {item}: feature 11: mean " in text
            assert f"entry {i}, item {item}: feature 20: mean " in text
    assert "-> 30 over 8 tokens" in text and "-> -15 over 8 tokens" in text


def test_inputs_are_never_mutated_and_other_keys_carried_over():
    sae = relu_sae()
    conditioning = tiny_conditioning(seed=1)
    conditioning[0][1]["extra"] = {"a": 1}
    saved = snapshot(conditioning)
    entry, options = conditioning[0], conditioning[0][1]
    edited, _ = run(conditioning, sae, features="5, 9", mode="add", strength=12.0)
    assert_unchanged(conditioning, saved)
    assert conditioning[0] is entry and conditioning[0][1] is options
    assert edited is not conditioning and edited[0] is not entry and edited[0][1] is not options
    assert edited[0][0] is entry[0]  # the tokens, not the target, are the same object
    assert edited[0][1]["extra"] is options["extra"] and edited[0][1]["guidance"] == options["guidance"]
    assert edited[0][1]["pooled_output"] is not options["pooled_output"]
    assert not torch.equal(edited[0][1]["pooled_output"], options["pooled_output"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_embeddings(dtype):
    sae = relu_sae()
    conditioning = tiny_conditioning(seed=1, batch=3)
    conditioning[0][1]["pooled_output"] = conditioning[0][1]["pooled_output"].to(dtype)
    x = conditioning[0][1]["pooled_output"]
    edited, _ = run(conditioning, sae, features="5")
    y = edited[0][1]["pooled_output"]
    assert y.dtype == dtype and y.shape == (3, 768)
    # the maths ran in fp32 on the half-precision values; only the final rounding differs
    expected = gytis_recipe(sae, x.float(), 5, 40.0).to(dtype)
    assert (y.float() - expected.float()).abs().max() <= expected.float().abs().max() * torch.finfo(dtype).eps


def test_width_mismatch_names_both_widths_and_the_target():
    with pytest.raises(ValueError, match=r"conditioning entry 0 pooled_output is 768-d .* SAE reads 1280-d"):
        run(tiny_conditioning(seed=1), relu_sae(d_in=1280, d_sae=64))
    with pytest.raises(ValueError, match=r"conditioning entry 0 tokens is 64-d .* SAE reads 768-d"):
        run(tiny_conditioning(seed=1), relu_sae(), target="tokens")


def test_missing_pooled_output_is_a_clear_error():
    conditioning = [[torch.zeros(1, 4, 768), {"guidance": 3.5}]]
    with pytest.raises(ValueError, match=r"conditioning entry 0 has no 'pooled_output' \(its keys: guidance\)"):
        run(conditioning, relu_sae())


def test_bad_features_and_mode_are_clear_errors():
    with pytest.raises(ValueError, match="out of range for this SAE, which has 320 features"):
        run(tiny_conditioning(seed=1), relu_sae(), features="320")
    with pytest.raises(ValueError, match="features is empty"):
        run(tiny_conditioning(seed=1), relu_sae(), features=" ")


def test_tiny_flux_sampling_changes_only_when_the_edit_does(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    sae = relu_sae()
    plain = sample(tiny_flux, positive, negative, steps=2, cfg=2.0, seed=4)

    steered_cond, _ = run(positive, sae, features="5", strength=40.0)
    steered = sample(tiny_flux, steered_cond, negative, steps=2, cfg=2.0, seed=4)
    assert torch.isfinite(steered).all()
    assert (steered - plain).abs().max() > 1e-3

    tokens_cond, _ = run(positive, topk_sae(), target="tokens", features="11", strength=30.0)
    assert (sample(tiny_flux, tokens_cond, negative, steps=2, cfg=2.0, seed=4) - plain).abs().max() > 1e-3

    # edits with Δz = 0: "add where active" on a feature that never fires, "set" a feature to its own value
    dead_cond, text = run(positive, sae, features=str(DEAD), mode="add where active")
    assert "(inactive)" in text
    assert torch.equal(dead_cond[0][1]["pooled_output"], positive[0][1]["pooled_output"])
    assert torch.equal(sample(tiny_flux, dead_cond, negative, steps=2, cfg=2.0, seed=4), plain)
    zero_cond, _ = run(positive, sae, features=str(DEAD), mode="set", strength=0.0)
    assert torch.equal(sample(tiny_flux, zero_cond, negative, steps=2, cfg=2.0, seed=4), plain)


@pytest.mark.parametrize("layout_name", sorted(sae_layouts.ALL))
def test_gytis_recipe_for_every_public_layout(layout_name, tmp_path):
    """Through load_sae, each format's own published maths: decode(z′, x) + x − decode(z, x)."""
    layout = sae_layouts.ALL[layout_name](tmp_path)
    sae = load_sae(layout.path)
    x = sae_layouts.activations(shape=(2, 5))
    conditioning = [[x, {"pooled_output": x[:, 0], "guidance": 3.5}]]
    edited, _ = run(conditioning, sae, target="tokens", features="7:40, 12", strength=-3.0)
    z = layout.encode(x)
    z_edit = z.clone()
    z_edit[..., 7], z_edit[..., 12] = 40.0, -3.0
    expected = layout.decode(z_edit, x) + x - layout.decode(z, x)
    torch.testing.assert_close(edited[0][0], expected, rtol=1e-5, atol=1e-4)
