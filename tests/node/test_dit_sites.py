"""DiT block sites (SD3/3.5, Qwen-Image, Lumina2, Z-Image, Wan 2.1, Wan 2.2) on tiny models built as ComfyUI
builds them, sampled with ``comfy.sample.sample``: what the tap captures and what flows on after an edit
against plain torch hooks on the same blocks (the block's own input and output, and the next block's input);
strength 0 / identity bit-identical; CFG-half selection; token layouts (Lumina's caption, Wan's frames and
reference image, Qwen's reference latents); the step window; one-line errors; hook names.
FLUX.2 and Chroma go through the FLUX table and tap (``attach_tap``), checked the same way."""
from __future__ import annotations

import pytest
import torch

from comfyui_sae_steering.harness.sae_factory import random_sae
from comfyui_sae_steering.harness.tiny_dit import build_tiny_dit, tiny_dit_conditioning, tiny_dit_latent
from comfyui_sae_steering.nodes.sites.dit_sites import dit_site_choices, dit_site_from_hook, dit_width
from comfyui_sae_steering.nodes.sites.dit_tap import attach_dit_tap
from comfyui_sae_steering.nodes.sites.model_families import model_family
from comfyui_sae_steering.nodes.sites.tap import TapSpec, attach_tap
from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
from comfyui_sae_steering.nodes.steer.steer_callback import SteerCallback
from dit_capture import (BLOCK, FAMILIES, block_io, edited_output, image_tokens, new_record, record_rows, run,
                         site_of)
from flux_capture import hooks_left

# (config, stream, reads): both streams of SD3 and Qwen-Image, the one stream of the others
ALL_CASES = [(name, stream, reads) for name in FAMILIES for stream in ("img", "txt") for reads in ("out", "update")
             if stream == "img" or name in ("SD3", "QwenImage")]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_tiny_models_are_of_their_family(tiny_dit, name):
    assert model_family(tiny_dit(name)) == FAMILIES[name][0]


@pytest.mark.parametrize("name,stream,reads", ALL_CASES)
def test_capture_is_exactly_the_block_output_or_update(tiny_dit, name, stream, reads):
    model = tiny_dit(name)
    seen = []
    patched, _ = attach_dit_tap(model, TapSpec(site_of(name, stream, reads), BLOCK),
                                lambda x, event: seen.append((x.clone(), event.grid)))
    with block_io(model, name, BLOCK, stream, new_record()) as record:
        run(patched, name)
    assert len(seen) == len(record["io"]) == 2
    tokens = image_tokens(name, record) if stream == "img" else slice(None)
    for (x, grid), (inp, out) in zip(seen, record["io"]):
        expected = (out - inp if reads == "update" else out)[:, tokens]
        assert torch.equal(x, expected) and x.abs().max() > 0
    shape = tiny_dit_latent(name).shape
    expected_grid = (shape[-2] // 2, shape[-1] // 2)
    assert seen[0][1] == ((shape[2],) + expected_grid if name.startswith("WAN") else expected_grid)
    assert hooks_left(model.get_model_object("diffusion_model")) == []


def edit(x, event):
    return x * 1.5 + 0.25


@pytest.mark.parametrize("name,stream,reads", ALL_CASES)
def test_an_edit_lands_exactly_on_the_selected_tokens(tiny_dit, name, stream, reads):
    model = tiny_dit(name)
    patched, _ = attach_dit_tap(model, TapSpec(site_of(name, stream, reads), BLOCK), edit)
    with block_io(model, name, BLOCK, stream, new_record()) as record:
        run(patched, name)
    tokens = image_tokens(name, record) if stream == "img" else slice(None)
    assert len(record["io"]) == len(record["next"]) == 2
    for (inp, out), flowed in zip(record["io"], record["next"]):
        assert torch.equal(flowed, edited_output(inp, out, tokens, reads, lambda x: edit(x, None)))
        assert not torch.equal(flowed, out)


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("reads", ["out", "update"])
def test_steering_matches_the_kernel_and_strength_zero_is_bit_identical(tiny_dit, name, reads):
    model = tiny_dit(name)
    site = site_of(name, "img", reads)
    sae = random_sae(d_in=dit_width(model), d_sae=64, k=6, seed=4)
    plain = run(model, name, steps=3)
    identity, _ = attach_dit_tap(model, TapSpec(site, BLOCK), lambda x, event: x)
    assert torch.equal(run(identity, name, steps=3), plain)
    for strength, same in ((0.0, True), (3.0, False)):
        edits = edits_for(parse_features("0, 1, 2", strength), "add")
        patched, _ = attach_dit_tap(model, TapSpec(site, BLOCK), SteerCallback(sae, edits), d_in=sae.d_in)
        assert torch.equal(run(patched, name, steps=3), plain) == same
    edits = edits_for(parse_features("0:2.0, 1:-1.5", 1.0), "add")
    patched, _ = attach_dit_tap(model, TapSpec(site, BLOCK), SteerCallback(sae, edits), d_in=sae.d_in)
    with block_io(model, name, BLOCK, "img", new_record()) as record:
        run(patched, name, steps=1)
    (inp, out), flowed = record["io"][0], record["next"][0]
    tokens = image_tokens(name, record)
    expected = edited_output(inp, out, tokens, reads, lambda x: sae.steer(x, edits))
    torch.testing.assert_close(flowed, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(flowed, out)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_update_sites_in_bf16_stay_finite_and_steer(name):
    """bf16 activations (as ComfyUI runs bf16 weights): the SAE maths in fp32, the edit cast back."""
    model = build_tiny_dit(name, seed=0, dtype=torch.bfloat16)
    sae = random_sae(d_in=dit_width(model), d_sae=64, k=6, seed=4)
    patched, _ = attach_dit_tap(model, TapSpec(site_of(name, "img", "update"), BLOCK), SteerCallback(
        sae, edits_for(parse_features("0:3.0, 1:-2.0", 1.0), "add where active")), d_in=sae.d_in)
    steered = run(patched, name)
    assert torch.isfinite(steered).all() and not torch.equal(steered, run(model, name))


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("apply_to", ["positive", "negative"])
def test_apply_to_edits_only_that_half(tiny_dit, name, apply_to):
    model = tiny_dit(name)
    patched, _ = attach_dit_tap(model, TapSpec(site_of(name, "img", "update"), BLOCK, apply_to=apply_to), edit)
    record_rows(patched, record := new_record())
    with block_io(model, name, BLOCK, "img", record):
        run(patched, name)
    wanted = 0 if apply_to == "positive" else 1
    assert len(record["rows"]) == len(record["next"]) == 2
    for cond_or_uncond, (_, out), flowed in zip(record["rows"], record["io"], record["next"]):
        rows = torch.tensor(cond_or_uncond).repeat_interleave(out.shape[0] // len(cond_or_uncond))
        assert torch.equal((flowed != out).flatten(1).any(1), rows == wanted)


@pytest.mark.parametrize("name", ["Lumina2", "ZImage"])
@pytest.mark.parametrize("tokens", ["text", "all"])
def test_lumina_joint_stream_tokens(tiny_dit, name, tokens):
    """Lumina's stream is cat(caption, image[, padding]): text = the caption (Z-Image pads it to 32), all = all."""
    model = tiny_dit(name)
    seen = []
    patched, _ = attach_dit_tap(model, TapSpec("layers.out", BLOCK, tokens=tokens),
                                lambda x, event: seen.append((x.clone(), event.image_tokens, event.txt_len)))
    with block_io(model, name, BLOCK, "img", new_record()) as record:
        run(patched, name)
    caption, image = record["caption"][0], image_tokens(name, record)
    assert caption == (32 if name == "ZImage" else 7)
    for (x, image_range, txt_len), (_, out) in zip(seen, record["io"]):
        assert txt_len == caption
        if tokens == "text":
            assert torch.equal(x, out[:, :caption]) and image_range is None
        else:
            assert torch.equal(x, out) and image_range == image


def test_qwen_reference_latents_follow_the_image(tiny_dit):
    """Qwen-Image Edit: reference-latent tokens come after the generated image's; 'all' hands them over too."""
    model = tiny_dit("QwenImage")
    reference = torch.randn(1, 16, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    positive = [[c, {**extra, "reference_latents": [reference]}] for c, extra in tiny_dit_conditioning("QwenImage", 1)]
    for tokens in ("image", "all"):
        seen = []
        patched, _ = attach_dit_tap(model, TapSpec("transformer_blocks.out", BLOCK, tokens=tokens),
                                    lambda x, event: seen.append((x.clone(), event.image_tokens)))
        with block_io(model, "QwenImage", BLOCK, "img", new_record()) as record:
            run(patched, "QwenImage", positive=positive, negative=positive)
        image = image_tokens("QwenImage", record)
        for (x, image_range), (_, out) in zip(seen, record["io"]):
            assert out.shape[1] == image.stop + 4  # 2 x 2 reference tokens
            assert torch.equal(x, out if tokens == "all" else out[:, image]) and image_range == slice(0, image.stop)


def test_wan_reference_image_comes_first():
    """Wan with a reference-image conv (ref_conv): its tokens precede the video's; the tap skips them."""
    model = build_tiny_dit("WAN21_T2V", seed=0, in_dim_ref_conv=16)
    reference = torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(6))  # one frame's size (RoPE)
    positive = [[c, {**extra, "reference_latents": [reference]}] for c, extra in tiny_dit_conditioning("WAN21_T2V", 1)]
    seen = []
    patched, _ = attach_dit_tap(model, TapSpec("blocks.update", BLOCK), lambda x, event: seen.append(x.clone()))
    with block_io(model, "WAN21_T2V", BLOCK, "img", new_record()) as record:
        run(patched, "WAN21_T2V", positive=positive, negative=positive)
    video = image_tokens("WAN21_T2V", record)
    assert len(seen) == 2
    for x, (inp, out) in zip(seen, record["io"]):
        assert out.shape[1] == 16 + video.stop  # the 4 x 4 reference tokens, then the video's
        assert torch.equal(x, (out - inp)[:, 16:16 + video.stop])


def test_a_mask_weighs_every_video_frame_alike(tiny_dit):
    """A regional mask on Wan: the same weights on every frame (the grid carries the frames)."""
    model = tiny_dit("WAN21_T2V")
    mask = torch.zeros(32, 32)
    mask[:, :16] = 1.0  # the left half of every frame
    patched, _ = attach_dit_tap(model, TapSpec("blocks.out", BLOCK), SteerCallback(
        random_sae(d_in=64, d_sae=64, k=6, seed=4), edits_for(parse_features("0:3.0", 1.0), "add"), mask=mask))
    with block_io(model, "WAN21_T2V", BLOCK, "img", new_record()) as record:
        run(patched, "WAN21_T2V", steps=1)
    (_, out), flowed = record["io"][0], record["next"][0]
    changed = (flowed != out).any(-1).reshape(out.shape[0], 3, 4, 4)  # rows, frames, h, w
    assert changed[..., :2].all() and not changed[..., 2:].any()


def test_step_window(tiny_dit):
    model = tiny_dit("WAN21_T2V")
    called = []
    patched, _ = attach_dit_tap(model, TapSpec("blocks.update", BLOCK, start_percent=0.5),
                                lambda x, event: called.append(event.sigma))
    run(patched, "WAN21_T2V", steps=4)
    import comfy.samplers
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", 4)[:-1].tolist()
    start = float(sampling.percent_to_sigma(0.5))
    expected = [s for s in sigmas if s <= start]
    assert 0 < len(expected) < len(sigmas)
    assert called == pytest.approx(expected, rel=1e-6)


def test_chains_a_replacement_already_there(tiny_dit):
    """A second tap on the same block chains the first (patches_replace keeps one entry per key)."""
    model = tiny_dit("SD3")
    first, _ = attach_dit_tap(model, TapSpec("transformer_blocks.out", BLOCK), edit)
    both, _ = attach_dit_tap(first, TapSpec("transformer_blocks.out", BLOCK), edit)
    with block_io(model, "SD3", BLOCK, "img", new_record()) as record:
        run(both, "SD3", steps=1)
    (_, out), flowed = record["io"][0], record["next"][0]
    assert torch.equal(flowed, edit(edit(out, None), None))


def test_bad_input_is_refused_before_sampling(tiny_dit, tiny_flux):
    sd3, wan = tiny_dit("SD3"), tiny_dit("WAN21_T2V")
    with pytest.raises(ValueError, match=r"^site 'blocks' is not in this SD3/3.5 model; it has transformer_blocks, "
                                         r"transformer_blocks.context \(each as .out or .update\)$"):
        attach_dit_tap(sd3, TapSpec("blocks.out", 0), edit)
    with pytest.raises(ValueError, match=r"^site 'transformer_blocks.context' is not in this Wan 2.1 model; it has "
                                         r"blocks \(each as .out or .update\)$"):
        attach_dit_tap(wan, TapSpec("transformer_blocks.context.update", 0), edit)
    with pytest.raises(ValueError, match=r"^the SAE reads 7-d activations but transformer_blocks.1 of this SD3/3.5 "
                                         r"model is 128-d: load an SAE trained at this site$"):
        attach_dit_tap(sd3, TapSpec("transformer_blocks.update", 1), edit, d_in=7)
    with pytest.raises(ValueError, match=r"^block 3 is out of range for blocks of this Wan 2.1 model: it has 3 "
                                         r"blocks \(0..2\)$"):
        attach_dit_tap(wan, TapSpec("blocks.out", 3), edit)
    with pytest.raises(ValueError, match=r"^block 2 of this SD3/3.5 model has no context output"):
        attach_dit_tap(sd3, TapSpec("transformer_blocks.context.out", 2), edit)
    with pytest.raises(ValueError, match=r"^tokens 'text': blocks.out of this Wan 2.1 model holds no text tokens; "
                                         r"choose image or all$"):
        attach_dit_tap(wan, TapSpec("blocks.out", 0, tokens="text"), edit)
    with pytest.raises(ValueError, match=r"^site 'double.img.out' is not one of transformer_blocks.out, "):
        attach_dit_tap(sd3, TapSpec("double.img.out", 0), edit)
    with pytest.raises(ValueError, match=r"^DiT sites need an SD3/3.5, Qwen-Image, Lumina2, Z-Image, Wan 2.1 or "
                                         r"Wan 2.2 model; this one is FLUX.1$"):
        attach_dit_tap(tiny_flux, TapSpec("transformer_blocks.out", 0), edit)
    assert sd3.model_options["transformer_options"].get("patches_replace", {}) == {}  # the input MODEL is untouched


def test_site_choices():
    assert dit_site_choices() == ["transformer_blocks.out", "transformer_blocks.update",
                                  "transformer_blocks.context.out", "transformer_blocks.context.update",
                                  "layers.out", "layers.update", "blocks.out", "blocks.update"]


@pytest.mark.parametrize("hook,expected", [
    ("transformer_blocks.18", ("transformer_blocks.out", 18)),
    ("transformer.transformer_blocks.18.update", ("transformer_blocks.update", 18)),
    ("unet.transformer_blocks.3.update_context", ("transformer_blocks.context.update", 3)),
    ("model.diffusion_model.layers.3", ("layers.out", 3)),
    ("blocks.5.update", ("blocks.update", 5)),
    ("layers.update:7", ("layers.update", 7)),
    ("transformer_blocks.context.out@2", ("transformer_blocks.context.out", 2)),
    ("single_transformer_blocks.3", None),
    ("up_blocks.1.attentions.2.transformer_blocks.0", None),
    ("transformer_blocks.5.attn", None),
    ("layers.2.update_context", None),
    ("noise_refiner.1", None),
    ("", None),
    (None, None),
])
def test_hook_names(hook, expected):
    assert dit_site_from_hook(hook) == expected


# -- FLUX.2 and Chroma: FLUX's double/single blocks, hooked by the FLUX table and tap ---------------------------
def flux_stream(kind, args, kwargs):
    """The image (double) or joint (single) stream a FLUX block is given: block(img=, txt=, ...) or block(x, ...)."""
    return (kwargs["img"] if kind == "double" else args[0]).clone()


@pytest.mark.parametrize("name", ["Flux2", "Chroma"])
@pytest.mark.parametrize("site,reads", [("double.img.out", "out"), ("single.update", "update")])
def test_flux2_and_chroma_through_the_flux_tap(name, site, reads):
    model = build_tiny_dit(name, seed=0)
    diffusion_model = model.get_model_object("diffusion_model")
    seen = []

    def record_and_edit(x, event):
        seen.append(x.clone())
        return edit(x, event)
    patched, _ = attach_tap(model, TapSpec(site, 0), record_and_edit, d_in=diffusion_model.hidden_size)
    kind = site.split(".")[0]
    module_list = diffusion_model.double_blocks if kind == "double" else diffusion_model.single_blocks
    io, flowed, text, pending = [], [], [], []
    handles = [
        module_list[0].register_forward_pre_hook(lambda m, a, k: pending.append(flux_stream(kind, a, k)),
                                                 with_kwargs=True),
        module_list[0].register_forward_hook(lambda m, a, k, out: io.append(
            (pending.pop(), (out[0] if kind == "double" else out).clone())), with_kwargs=True),
        module_list[1].register_forward_pre_hook(lambda m, a, k: flowed.append(flux_stream(kind, a, k)),
                                                 with_kwargs=True),
        diffusion_model.double_blocks[-1].register_forward_hook(lambda m, a, out: text.append(out[1].shape[1])),
    ]
    try:
        run(patched, name)
    finally:
        for handle in handles:
            handle.remove()
    assert text[0] == (512 if name == "Flux2" else 7)  # FLUX.2 pads its text to 512 tokens
    latent, patch = tiny_dit_latent(name).shape, (1 if name == "Flux2" else 2)
    start = text[0] if kind == "single" else 0  # single blocks: cat(text, image)
    image = slice(start, start + (latent[-2] // patch) * (latent[-1] // patch))
    assert len(seen) == len(io) == len(flowed) == 2
    for x, (inp, out), after in zip(seen, io, flowed):
        selected = (out - inp if reads == "update" else out)[:, image]
        assert torch.equal(x, selected) and x.abs().max() > 0
        expected = out.clone()
        edited = edit(selected, None)
        expected[:, image] = out[:, image] + (edited - selected) if reads == "update" else edited
        assert torch.equal(after, expected)
    assert hooks_left(diffusion_model) == []
