"""The main-job command end to end: the --random-flux path (tiny FLUX, SAE trained on the spot) and the real-model path.

Runs ``python -m demo.main_job`` in a subprocess (as ``scripts/demo`` does), so ComfyUI loads the pack
from a ``custom_nodes`` folder in a fresh process and this test process's node table stays untouched.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_sae_steering.harness.comfyui_locator import PACK_ROOT, locate_comfyui
from comfyui_sae_steering.sae import load_sae
from comfyui_sae_steering.sae.formats import pack
from comfyui_sae_steering.sae.train import train_topk_sae

FAST = ["--random-flux", "--fast", "--train-steps", "80", "--d-sae", "256"]


def run_main_job(*args, timeout=600):
    env = {**os.environ, "COMFYUI_PATH": str(locate_comfyui(allow_clone=False))}
    for name in ("SAE_DEMO_UNET", "SAE_DEMO_CLIP_L", "SAE_DEMO_T5", "SAE_DEMO_VAE", "SAE_DEMO_SAE"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "demo.main_job", *args], cwd=PACK_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_main_job("--out", str(out), *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout


def test_writes_every_output_and_says_where(tiny_run):
    out, stdout = tiny_run
    names = ["unsteered.png", "steered.png", "comparison.png", "scale_report.txt", "scale_plot.png",
             "training_report.json", "demo_topk_sae.safetensors"]
    for name in names:
        assert (out / name).is_file(), name
        assert str(out / name) in stdout
    unsteered = np.asarray(Image.open(out / "unsteered.png"))
    assert unsteered.shape == (128, 128, 3)  # --fast: 128 px, the latent preview upscaled 8x
    assert np.asarray(Image.open(out / "scale_plot.png")).ndim == 3


def test_steered_image_differs_from_unsteered(tiny_run):
    out, _ = tiny_run
    unsteered = np.asarray(Image.open(out / "unsteered.png"), dtype=np.int16)
    steered = np.asarray(Image.open(out / "steered.png"), dtype=np.int16)
    assert np.abs(unsteered - steered).max() > 0


def test_reports_name_the_site_and_the_sae_learned(tiny_run):
    out, stdout = tiny_run
    report = (out / "scale_report.txt").read_text()
    assert "double.img.out[1]" in report and "FVU" in report
    training = json.loads((out / "training_report.json").read_text())
    assert (training["site"], training["block"], training["d_sae"], training["k"]) == ("double.img.out", 1, 256, 16)
    assert training["fvu"] < 0.3  # a useful SAE: the steering acts on features it really learned
    assert training["fvu_history"][-1][1] < training["fvu_history"][0][1]
    assert training["feature_frequency"] > 0  # the steered feature fires on the positive run
    assert f"FVU {training['fvu']:.3f}" in stdout


def test_saved_sae_reloads_through_load_sae(tiny_run):
    out, _ = tiny_run
    sae = load_sae(out / "demo_topk_sae.safetensors")
    assert (sae.arch, sae.k, sae.d_in, sae.d_sae, sae.hook) == ("topk", 16, 128, 256, "double.img.out.1")


def test_real_model_run_converts_and_validates_example_workflow_1(tmp_path):
    """Placeholder files: ComfyUI's validation accepts the converted workflow 1 and execution reaches
    the model loaders, which then fail on the placeholders with an error naming the node."""
    files = {}
    for flag, name in (("--unet", "flux1-dev.safetensors"), ("--clip-l", "clip_l.safetensors"),
                       ("--t5", "t5xxl_fp16.safetensors"), ("--vae", "ae.safetensors")):
        (tmp_path / name).write_bytes(b"not a model")
        files[flag] = str(tmp_path / name)
    sae, _ = train_topk_sae(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)), d_sae=16, k=2, steps=1)
    pack.write(sae, tmp_path / "sae.safetensors")
    args = [a for flag, path in files.items() for a in (flag, path)]
    result = run_main_job("--out", str(tmp_path / "out"), *args, "--sae", str(tmp_path / "sae.safetensors"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "flux_measure_then_steer.json" in result.stdout
    assert "prompt rejected" not in result.stderr
    assert any(f"({loader}) failed" in result.stderr for loader in ("UNETLoader", "DualCLIPLoader", "VAELoader"))


def test_real_model_run_needs_all_five_files(tmp_path):
    result = run_main_job("--out", str(tmp_path), "--unet", str(tmp_path / "x.safetensors"))
    assert result.returncode == 2
    assert "--clip-l / SAE_DEMO_CLIP_L" in result.stderr and "--sae / SAE_DEMO_SAE" in result.stderr
