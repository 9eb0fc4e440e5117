"""SAE Edit CLIP Vision: a new Output of the same class, Gytis's recipe, and ComfyUI's unCLIP route."""
import comfy.clip_vision
import comfy.model_base
import nodes
import pytest
import torch
from comfy.ldm.modules.encoders.noise_aug_modules import CLIPEmbeddingNoiseAugmentation
from embedding_saes import DEAD, clip_vision_output, gytis_recipe, reference_encode, relu_sae

from comfyui_sae_steering.nodes.embedding.clip_vision_edit_node import SAEClipVisionEdit


def run(output, sae, target="image_embeds", features="5", strength=40.0, mode="set", keep_error=True):
    return SAEClipVisionEdit.execute(clip_vision_output=output, sae=sae, target=target, features=features,
                                     strength=strength, mode=mode, keep_error=keep_error).result


def test_image_embeds_gytis_recipe_and_a_new_output_object():
    sae = relu_sae(d_in=1280, d_sae=256)
    output = clip_vision_output()
    saved = {k: v.clone() for k, v in vars(output).items() if isinstance(v, torch.Tensor)}
    before = dict(vars(output))
    feature = int(reference_encode(sae, output.image_embeds)[0].argmax())
    edited, text = run(output, sae, features=str(feature))

    assert type(edited) is comfy.clip_vision.Output and edited is not output
    torch.testing.assert_close(edited.image_embeds.double(), gytis_recipe(sae, output.image_embeds, feature, 40.0),
                               rtol=0, atol=1e-4)
    for name in ("last_hidden_state", "penultimate_hidden_states", "mm_projected"):
        assert edited[name] is output[name]
    # the input: same attributes, same objects, same values
    assert vars(output) == before and all(vars(output)[k] is v for k, v in before.items())
    assert all(torch.equal(output[k], v) for k, v in saved.items())
    z = reference_encode(sae, output.image_embeds)
    for item in range(2):
        state = "active" if z[item, feature] > 0 else "inactive"
        assert f"item {item}: feature {feature}: {float(z[item, feature]):.4g} -> 40 ({state})" in text


def test_hidden_states_target_edits_every_token():
    sae = relu_sae(d_in=1280, d_sae=256)
    output = clip_vision_output()
    edited, text = run(output, sae, target="penultimate_hidden_states", features="9:25")
    torch.testing.assert_close(edited.penultimate_hidden_states.double(),
                               gytis_recipe(sae, output.penultimate_hidden_states, 9, 25.0), rtol=0, atol=1e-4)
    assert edited.image_embeds is output.image_embeds
    assert "over 5 tokens" in text


def test_edited_output_goes_through_unclip_conditioning_to_sdxl_revision():
    """unCLIPConditioning stores the output; SDXL's model reads its image_embeds through the noise augmentor."""
    sae = relu_sae(d_in=1280, d_sae=256)
    output = clip_vision_output(batch=1)
    edited, _ = run(output, sae, features="5")
    unclip = nodes.NODE_CLASS_MAPPINGS["unCLIPConditioning"]()
    base = [[torch.zeros(1, 77, 2048), {"pooled_output": torch.zeros(1, 1280)}]]
    (plain_cond,) = unclip.apply_adm(base, output, strength=1.0, noise_augmentation=0.0)
    (edited_cond,) = unclip.apply_adm(base, edited, strength=1.0, noise_augmentation=0.0)
    assert edited_cond[0][1]["unclip_conditioning"][0]["clip_vision_output"] is edited

    # the SDXL model's own augmentor and pooled-vector route (comfy.model_base.SDXL.encode_adm)
    augmentor = CLIPEmbeddingNoiseAugmentation(
        noise_schedule_config={"timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}, timestep_dim=1280)

    def pooled(cond):
        return comfy.model_base.sdxl_pooled({**cond[0][1], "device": "cpu", "seed": 11}, augmentor)

    plain, steered = pooled(plain_cond), pooled(edited_cond)
    # same seed, same noise: the pooled vectors differ by exactly the edit, scaled by the noise schedule
    scale = float(augmentor.sqrt_alphas_cumprod[0])
    torch.testing.assert_close(steered - plain, scale * (edited.image_embeds - output.image_embeds),
                               rtol=0, atol=1e-5)
    assert (steered - plain).abs().max() > 0.1  # and the edit is not negligible

    # an edit with Δz = 0 gives the very same pooled vector
    dead, _ = run(output, sae, features=str(DEAD), mode="add where active")
    (dead_cond,) = unclip.apply_adm(base, dead, strength=1.0, noise_augmentation=0.0)
    assert torch.equal(pooled(dead_cond), plain)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_and_batch(dtype):
    sae = relu_sae(d_in=1280, d_sae=256)
    output = clip_vision_output(batch=3)
    output["image_embeds"] = output.image_embeds.to(dtype)
    edited, _ = run(output, sae, features="5, 6", mode="add", strength=15.0)
    y = edited.image_embeds
    assert y.dtype == dtype and y.shape == (3, 1280)
    expected = (output.image_embeds.double() + 15.0 * (sae.W_dec[5] + sae.W_dec[6]).double()).to(dtype)
    assert (y.float() - expected.float()).abs().max() <= expected.float().abs().max() * torch.finfo(dtype).eps


def test_width_mismatch_and_missing_field_errors():
    with pytest.raises(ValueError, match=r"clip_vision_output image_embeds is 1024-d .* SAE reads 1280-d"):
        run(clip_vision_output(width=1024), relu_sae(d_in=1280, d_sae=64))
    output = comfy.clip_vision.Output()
    output["image_embeds"] = torch.zeros(1, 1280)
    with pytest.raises(ValueError, match=r"has no 'last_hidden_state' tensor \(it has image_embeds\)"):
        run(output, relu_sae(d_in=1280, d_sae=64), target="last_hidden_state")
