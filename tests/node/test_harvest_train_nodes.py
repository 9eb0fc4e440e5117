"""SAE Harvest Activations and SAE Train on the tiny FLUX, sampled by the real ComfyUI."""
import json

import pytest
import torch

import folder_paths
from safetensors.torch import load_file

from comfyui_sae_steering.harness.tiny_flux import empty_latent, sample, tiny_conditioning
from comfyui_sae_steering.nodes.extension import NODES
from comfyui_sae_steering.nodes.sites.choice import resolve_site
from comfyui_sae_steering.nodes.train.harvest_node import SAEHarvestActivations
from comfyui_sae_steering.nodes.sae_loader import SAE_FOLDER, SAELoader
from comfyui_sae_steering.nodes.train.train_node import SAETrain
from flux_capture import Capture
from test_sae_loader import sae_dir  # noqa: F401  (fixture)

HARVEST = dict(name="h", site="double.img.out", block=1, tokens="image", prompts="", width=64, height=64,
               steps=2, seed=10, cfg=1.0, sampler_name="euler", scheduler="simple", dtype="fp16",
               prompts_per_shard=2)
PROMPTS = 5


@pytest.fixture
def folders(tmp_path, sae_dir):
    """models/sae (test_sae_loader's fixture) and the output folder, both under tmp_path."""
    previous = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path / "output"))
    yield tmp_path
    folder_paths.set_output_directory(previous)


def prompts(n=PROMPTS):
    """n prompts as one CONDITIONING list (each entry is one prompt for the harvest node)."""
    return [tiny_conditioning(seed=100 + i)[0] for i in range(n)]


def harvest(model, conditioning, **overrides):
    return SAEHarvestActivations.execute(model=model, conditioning=conditioning, **{**HARVEST, **overrides}).result


def test_shards_hold_exactly_the_activations_sampling_produced(tiny_flux, folders):
    folder, report = harvest(tiny_flux, prompts())
    assert folder == str(folders / "output" / "sae_activations" / "h")
    capture = Capture("double.img.out", 1, 64)
    expected = []
    with capture.before_hooks(tiny_flux.get_model_object("diffusion_model")):
        for i, entry in enumerate(prompts()):
            capture.before.clear()
            sample(tiny_flux, [entry], latent=empty_latent(64, 64), steps=2, seed=10 + i)
            expected.append(torch.cat([t.reshape(-1, 64) for t in capture.before]).half())
    manifest = json.loads((folders / "output/sae_activations/h/manifest.json").read_text())
    assert [s["prompts"] for s in manifest["shards"]] == [[0, 2], [2, 4], [4, 5]]
    assert (manifest["site"], manifest["block"], manifest["d_in"], manifest["dtype"]) == ("double.img.out", 1, 64, "fp16")
    assert manifest["steps"] == 2 and len(manifest["sigmas"]) == 3
    for shard, (a, b) in zip(manifest["shards"], [(0, 2), (2, 4), (4, 5)]):
        stored = load_file(str(folders / "output/sae_activations/h" / shard["file"]))["activations"]
        assert torch.equal(stored, torch.cat(expected[a:b])), shard["file"]
        assert shard["tokens"] == stored.shape[0] == (b - a) * 2 * 16  # 64 px: 8x8 latent, patch 2: 16 tokens × 2 steps
    assert manifest["total_tokens"] == PROMPTS * 2 * 16 and "3 shards written" in report


def test_rerun_skips_written_shards_and_redoes_a_missing_one_identically(tiny_flux, folders):
    harvest(tiny_flux, prompts())
    folder = folders / "output/sae_activations/h"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _, report = harvest(tiny_flux, prompts())
    assert "0 shards written, 3 already there" in report
    (folder / "shard-00001.safetensors").unlink()
    _, report = harvest(tiny_flux, prompts())
    assert "1 shards written, 2 already there" in report
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_harvest_of_another_site_into_the_folder_is_refused(tiny_flux, folders):
    harvest(tiny_flux, prompts(2))
    folder = folders / "output/sae_activations/h"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match="another harvest: site='double.img.out' \\(this harvest: 'single.out'\\)"):
        harvest(tiny_flux, prompts(2), site="single.out", block=0)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("overrides, message", [
    (dict(name="../x"), "must be a plain name"), (dict(prompts="a cat"), "no clip is connected"),
    (dict(block=9), "block 9 is out of range")])
def test_bad_harvest_inputs_are_clear_errors(tiny_flux, folders, overrides, message):
    with pytest.raises(ValueError, match=message):
        harvest(tiny_flux, prompts(1), **overrides)


def test_train_node_saves_an_sae_that_load_sae_lists_and_site_auto_finds(tiny_flux, folders):
    harvest(tiny_flux, prompts(), site="single.out", block=0, tokens="all", prompts_per_shard=1)
    sae, report, plot = SAETrain.execute(activations="h", save_name="mine", d_sae=128, expansion=16, k=8,
                                         batch_size=64, tokens=64 * 20, lr=0.0, normalize="scalar", seed=0).result
    assert "on 1280 tokens in 20 steps" in report and "site single.out.0" in report
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and float(plot.min()) >= 0 and float(plot.max()) <= 1
    assert "mine.safetensors" in folder_paths.get_filename_list(SAE_FOLDER)
    loaded = SAELoader.execute(sae_name="mine.safetensors", dtype="auto").result[0]
    assert resolve_site("auto", 0, loaded) == ("single.out", 0)
    assert torch.equal(loaded.W_dec, sae.W_dec) and loaded.d_in == 64
    assert not any(name.endswith(".state") for name in folder_paths.get_filename_list(SAE_FOLDER))


def test_node_contracts():
    harvest_schema = SAEHarvestActivations.define_schema()
    train_schema = SAETrain.define_schema()
    assert harvest_schema.node_id == "SAEHarvestActivations" and train_schema.node_id == "SAETrain"
    assert [i.id for i in harvest_schema.inputs][:5] == ["model", "name", "site", "block", "tokens"]
    assert [o.display_name for o in train_schema.outputs] == ["sae", "report", "loss_plot"]
    assert SAEHarvestActivations in NODES and SAETrain in NODES
