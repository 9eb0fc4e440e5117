"""Tiny World: the world, its classifier, the shipped models in ComfyUI's own classes, what the trained
model draws (accuracy floors read by the project's classifier) and that steering visibly changes it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_sae_steering.nodes.tiny_world import models, world
from comfyui_sae_steering.nodes.tiny_world.classify import classify, object_kept
from comfyui_sae_steering.nodes.tiny_world.text_encoder import CONTEXT_DIM, MAX_TOKENS, VOCABULARY
from comfyui_sae_steering.demo.tiny_world_eval import accuracy, sample_images

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def tiny_world():
    from comfyui_sae_steering.nodes.tiny_world.loader_node import TinyWorldLoader
    return TinyWorldLoader.execute().result


def test_world_is_seeded_and_classifier_reads_every_rendered_scene():
    images, scenes = world.dataset(120, seed=7)
    again, _ = world.dataset(120, seed=7)
    assert np.array_equal(images, again) and images.shape == (120, 64, 64, 3) and images.dtype == np.uint8
    for image, scene in zip(images, scenes):
        reading = classify(image)
        assert (reading.colour, reading.shape) == (scene.colour, scene.shape), scene
    blank = np.full((64, 64, 3), world.BACKGROUND, np.uint8)
    assert classify(blank).colour is None and classify(blank).shape is None


def test_stock_clip_text_encode_encodes_for_the_tiny_text_encoder(tiny_world):
    import nodes

    _, clip, _, _ = tiny_world
    (red,) = nodes.CLIPTextEncode().encode(clip, "a red circle")
    (blue,) = nodes.CLIPTextEncode().encode(clip, "a blue circle")
    cond, extra = red[0]
    assert cond.shape == (1, MAX_TOKENS, CONTEXT_DIM) and extra["pooled_output"].shape == (1, CONTEXT_DIM)
    # the prompt reaches FLUX through its tokens only: the modulation vector carries no colour
    assert not extra["pooled_output"].any()
    assert not torch.equal(cond, blue[0][0])
    assert torch.equal(cond[:, 0], blue[0][0][:, 0]) and torch.equal(cond[:, 2:], blue[0][0][:, 2:])
    # unknown words read as <unk>, never an error
    assert clip.tokenize("a purple circle")[0][1][0] == VOCABULARY.index("<unk>")


def test_vae_loads_in_comfyui_and_round_trips_the_world(tiny_world):
    _, _, vae, _ = tiny_world
    assert type(vae.first_stage_model).__name__ == "TAESD" and vae.latent_channels == 16
    images, scenes = world.dataset(24, seed=11)
    with torch.inference_mode():
        latent = vae.encode(torch.from_numpy(images).float() / 255)
        assert latent.shape == (24, 16, 8, 8)
        decoded = (vae.decode(latent).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    read = [classify(d) for d in decoded]
    assert sum((r.colour, r.shape) == (s.colour, s.shape) for r, s in zip(read, scenes)) >= 23


def test_vae_latent_is_factored_into_shape_and_colour(tiny_world):
    """What makes the world steerable: the shape channels do not see the colour, the colour code is one value
    over the whole latent, and another colour's code redraws the same object in that colour."""
    import dataclasses

    from comfyui_sae_steering.demo.tiny_world_training.stages import encode_images
    from comfyui_sae_steering.demo.tiny_world_training.vae import SHAPE_CHANNELS

    _, _, vae, _ = tiny_world
    _, scenes = world.dataset(24, seed=12)
    red = [dataclasses.replace(s, colour="red") for s in scenes]
    blue = [dataclasses.replace(s, colour="blue") for s in scenes]
    latent_red = encode_images(vae, np.stack([world.render(s) for s in red]))
    latent_blue = encode_images(vae, np.stack([world.render(s) for s in blue]))
    shape_red, shape_blue = latent_red[:, :SHAPE_CHANNELS], latent_blue[:, :SHAPE_CHANNELS]
    assert (shape_red - shape_blue).norm() < 0.15 * shape_red.norm()
    code_red, code_blue = latent_red[:, SHAPE_CHANNELS:], latent_blue[:, SHAPE_CHANNELS:]
    between_colours = (code_red.mean((2, 3)) - code_blue.mean((2, 3))).norm(dim=1).mean()
    assert code_red.std((2, 3)).norm(dim=1).mean() < 0.1 * between_colours
    swapped = torch.cat([shape_red, code_blue], 1)
    import comfy.latent_formats
    with torch.inference_mode():
        drawn = (vae.decode(comfy.latent_formats.Flux().process_out(swapped)).clamp(0, 1) * 255).round().to(torch.uint8)
    read = [classify(d) for d in drawn.numpy()]
    assert sum((r.colour, r.shape) == ("blue", s.shape) for r, s in zip(read, scenes)) >= 21, read


def test_colour_code_rescaling_is_exact_up_to_the_decoders_clamp():
    """``match_code_spread`` moves a factor from the decoder's first convolution into the encoder's last one."""
    from comfyui_sae_steering.demo.tiny_world_training.vae import (SHAPE_CHANNELS, build_taesd, images_to_tensor,
                                                                    match_code_spread)

    model = build_taesd()
    x = images_to_tensor(world.dataset(4, seed=0)[0])
    with torch.no_grad():
        before = model.taesd_encoder(x)
        first_before = model.taesd_decoder[1](before)
        factor = match_code_spread(model, x)
        after = model.taesd_encoder(x)
        first_after = model.taesd_decoder[1](after)
    torch.testing.assert_close(after[:, :SHAPE_CHANNELS], before[:, :SHAPE_CHANNELS])
    torch.testing.assert_close(after[:, SHAPE_CHANNELS:], factor * before[:, SHAPE_CHANNELS:], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(after[:, :SHAPE_CHANNELS].std(), after[:, SHAPE_CHANNELS:].std(), rtol=1e-4, atol=0)
    torch.testing.assert_close(first_after, first_before, rtol=1e-4, atol=1e-5)


def test_training_forward_equals_comfyuis_forward(tiny_world):
    """The out-of-place training path computes what ComfyUI samples with."""
    from comfyui_sae_steering.demo.tiny_world_training.flux import flux_forward, trainable_flux

    model = tiny_world[0].model.diffusion_model
    g = torch.Generator().manual_seed(0)
    x, sigma = torch.randn(3, 16, 8, 8, generator=g), torch.rand(3, generator=g)
    cond, pooled = torch.randn(3, MAX_TOKENS, CONTEXT_DIM, generator=g), torch.randn(3, CONTEXT_DIM, generator=g)
    with torch.no_grad():
        expected = model(x.clone(), sigma, cond.clone(), y=pooled, transformer_options={})
        with trainable_flux():
            got = flux_forward(model, x, sigma, cond, pooled)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_sae_labels_name_every_colour_and_shape(tiny_world):
    sae = tiny_world[3]
    assert sae.hook == "single.out.1"
    assert sorted(sae.labels.values()) == sorted([*world.COLOURS, *world.SHAPES])


def test_trained_model_draws_what_the_prompt_says(tiny_world):
    model, clip, vae, _ = tiny_world
    result = accuracy(model, clip, vae, SEEDS)
    assert result["colour"] >= 0.95, result
    assert result["shape"] >= 0.85, result


def test_steering_blue_turns_red_shapes_blue_in_place_and_leaves_the_model_untouched(tiny_world):
    """The main job's setting: every red shape turns blue and stays the same shape where it was (what the
    benchmark measures as success and kept; 12 seeds in README's strength guide)."""
    from comfyui_sae_steering.demo.tiny_world_eval import steer, target_scale
    from comfyui_sae_steering.demo.tiny_world_job import MODE, PROMPTS, START, STRENGTH

    model, clip, vae, sae = tiny_world
    steered = steer(model, sae, target_scale(model, clip, sae, "a blue circle")[0], "blue", STRENGTH, MODE,
                    start_percent=START)
    seeds = [0, 1, 2, 3]
    for prompt in PROMPTS:
        before = [classify(d.image) for d in sample_images(model, clip, vae, prompt, seeds)]
        after = [classify(d.image) for d in sample_images(steered, clip, vae, prompt, seeds)]
        assert all(r.colour == "red" for r in before), prompt
        assert sum(r.colour == "blue" for r in after) >= 3, (prompt, [r.colour for r in after])
        assert sum(object_kept(b, a) for b, a in zip(before, after)) >= 3, (prompt, [a.shape for a in after])
    # the model itself is untouched: the unsteered model still draws red
    assert [classify(d.image).colour for d in sample_images(model, clip, vae, PROMPTS[0], seeds)] == ["red"] * 4


def test_erasing_red_per_image_removes_it_keeps_the_shape_and_leaves_other_colours(tiny_world):
    """SAE Erase Concept as bench.steer_controls measures it (the features found by contrast, scope per image):
    red objects stop being red and keep their shape in place; a green object stays as it was."""
    from comfyui_sae_steering.nodes.steer.concept_erase_node import SAEConceptErase

    model, clip, vae, sae = tiny_world
    site, block = sae.hook.rsplit(".", 1)
    erased, report = SAEConceptErase.execute(
        model=model, sae=sae, site=site, block=int(block), tokens="image", features="", multiplier=1.0,
        push_to="−multiplier × feature mean", threshold="neutral mean", threshold_value=0.0, apply_to="both",
        top_n=4, latent={"samples": torch.zeros(4, 16, 8, 8)}, clip=clip,
        concept_prompts="\n".join(world.prompt_for("red", s) for s in world.SHAPES),
        neutral_prompts="\n".join(world.prompt_for(c, s) for c in world.COLOURS if c != "red" for s in world.SHAPES),
        steps=8, seed=0, scope="per image").result
    assert "(red)" in report  # the labelled feature is among those found
    seeds = [0, 1, 2, 3]
    for prompt in ("a red circle", "a red triangle", "a green circle"):
        before = [classify(d.image) for d in sample_images(model, clip, vae, prompt, seeds)]
        after = [classify(d.image) for d in sample_images(erased, clip, vae, prompt, seeds)]
        kept = sum(object_kept(b, a) for b, a in zip(before, after))
        colours = [a.colour for a in after]
        if "red" in prompt:
            assert sum(c != "red" for c in colours) >= 3 and kept >= 3, (prompt, colours, kept)
        else:
            assert colours == [b.colour for b in before] and kept >= 3, (prompt, colours, kept)


def test_missing_weights_say_how_to_retrain(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tiny_world_flux\.safetensors.*python -m demo\.tiny_world_training"):
        models.load_models(tmp_path)


def test_example_workflow_runs_in_the_real_server_and_the_steered_images_change(comfy_server, object_info):
    """The drag-and-drop workflow, converted as the frontend queues it, through POST /prompt: four seeds of
    'a red circle' saved unsteered and steered; the project's classifier reads what changed."""
    import json

    from PIL import Image

    from comfyui_sae_steering.harness.comfyui_locator import PACK_ROOT
    from comfyui_sae_steering.harness.workflow_api import to_api

    ui = json.loads((PACK_ROOT / "example_workflows" / "tiny_world_steer.json").read_text())
    entry = comfy_server.run_prompt(to_api(ui, object_info))
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = {}
    for output in entry["outputs"].values():
        for image in output.get("images", []):
            if image.get("type") == "output":
                branch = image["filename"].split("_")[0]  # "tiny_world/steered" saves steered_00001_.png
                path = comfy_server.output / image["subfolder"] / image["filename"]
                saved.setdefault(branch, []).append(classify(np.asarray(Image.open(path).convert("RGB"))))
    assert sorted(saved) == ["steered", "unsteered"] and len(saved["steered"]) == 4
    assert [r.colour for r in saved["unsteered"]].count("red") >= 3
    assert [r.colour for r in saved["steered"]].count("blue") >= 3


def test_training_code_runs_and_learns_a_little(tiny_world):
    """The retraining scripts work (a few steps: not the shipped recipe, which takes about 55 min)."""
    from comfyui_sae_steering.demo.tiny_world_training.flux import train_flux
    from comfyui_sae_steering.demo.tiny_world_training.vae import sharpen_decoder, train_factored_vae
    from comfyui_sae_steering.nodes.tiny_world.text_encoder import TinyWorldTextModel

    vae_model, vae_report = train_factored_vae(steps=12, batch=4, seed=0)
    assert np.isfinite(vae_report["final_loss"]) and type(vae_model).__name__ == "TAESD"
    encoder = {k: v.clone() for k, v in vae_model.taesd_encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in vae_model.taesd_decoder.state_dict().items()}
    assert np.isfinite(sharpen_decoder(vae_model, steps=3, batch=2, seed=0)["final_loss"])
    # the latent space FLUX learnt stays: only the decoder moves
    assert all(torch.equal(encoder[k], v) for k, v in vae_model.taesd_encoder.state_dict().items())
    assert any(not torch.equal(decoder[k], v) for k, v in vae_model.taesd_decoder.state_dict().items())
    flux = models.build_flux()
    flux.model.diffusion_model.load_state_dict(tiny_world[0].model.diffusion_model.state_dict())
    latents, ids = torch.randn(16, 16, 8, 8), torch.randint(0, len(VOCABULARY), (16, MAX_TOKENS))
    before = {k: v.clone() for k, v in flux.model.diffusion_model.state_dict().items()}
    report = train_flux(flux, TinyWorldTextModel(), latents, ids, steps=3, batch=4, seed=0)
    assert np.isfinite(report["final_loss"])
    assert any(not torch.equal(before[k], v) for k, v in flux.model.diffusion_model.state_dict().items())
    assert all(not p.requires_grad for p in flux.model.diffusion_model.parameters())  # ready to sample again


def test_sae_stage_runs_on_the_shipped_models(tmp_path):
    """The last training stage end to end (one sampling per prompt instead of 8, 20 SAE steps): it records both sites
    through the pack's tap, trains, labels, and writes SAEs the loader reads."""
    import argparse
    import shutil

    from comfyui_sae_steering.demo.tiny_world_training.stages import stage_sae
    from comfyui_sae_steering.nodes.sae_loader import SAE_CACHE

    for name in (models.FLUX_FILE, models.VAE_FILE, models.TEXT_ENCODER_FILE):
        shutil.copy(models.weight_path(name), tmp_path / name)
    report = stage_sae(tmp_path, argparse.Namespace(sae_seeds=1, sae_steps=20), {"sae": 5}, lambda *a: None)
    assert torch.is_grad_enabled()  # the stage leaves autograd as it found it
    assert sorted(report) == sorted(models.SAE_FILES)
    for name, (site, block) in models.SAE_SITES.items():
        sae = SAE_CACHE.get(str(tmp_path / name), "auto")
        assert sae.hook == f"{site}.{block}" and len(sae.labels) == 7, (name, sae.labels)
