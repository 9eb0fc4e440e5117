"""SAEImageFeatureScan on Tiny World (a real VAE, text encoder and FLUX in ComfyUI's classes): the image is
noised by hand here and the recorded features are checked against the captured activations, densely encoded."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import comfy.patcher_extension

from comfyui_sae_steering.nodes.extension import NODES
from comfyui_sae_steering.nodes.scan.image_scan_node import SAEImageFeatureScan
from flux_capture import Capture

PERCENT, SEED = 0.6, 7


@pytest.fixture(scope="module")
def tiny_world():
    from comfyui_sae_steering.nodes.tiny_world.loader_node import TinyWorldLoader
    return TinyWorldLoader.execute().result


def red_circle() -> torch.Tensor:
    from comfyui_sae_steering.nodes.tiny_world.world import Scene, render
    return torch.from_numpy(render(Scene("red", "circle", 24.0, 30.0, 12.0)).astype(np.float32) / 255.0)[None]


def test_one_forward_on_the_noised_image_and_its_features(tiny_world):
    model, clip, vae, sae = tiny_world
    positive = clip.encode_from_tokens_scheduled(clip.tokenize("a red circle"))
    image = red_circle()
    inputs, capture = [], Capture("double.img.out", 1, hidden=128)
    target = model.clone()

    def record_input(executor, x, *args, **kwargs):
        inputs.append(x.detach().clone())
        return executor(x, *args, **kwargs)
    target.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_input", record_input)
    capture.add_after(target)
    with capture.before_hooks(model.get_model_object("diffusion_model")):
        table, heatmaps, scan = SAEImageFeatureScan.execute(
            model=target, sae=sae, image=image, vae=vae, positive=positive, site="double.img.out", block=1,
            tokens="image", percent=PERCENT, seed=SEED, top_n=5).result
    # one forward, at the sigma of PERCENT by FLUX's time shift in closed form
    shift = model.get_model_object("model_sampling").shift
    t = 1.0 - PERCENT
    sigma = math.exp(shift) / (math.exp(shift) + (1.0 / t - 1.0))
    assert len(inputs) == 1 and len(capture.forwards) == 1
    assert capture.forwards[0][1] == pytest.approx(sigma, rel=1e-6)
    # the model saw sigma * noise + (1 - sigma) * the image's latent in the model's space (FLUX: (z - 0.1159) * 0.3611)
    latent = vae.encode(image)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(SEED))
    noised = sigma * noise + (1.0 - sigma) * (latent - 0.1159) * 0.3611
    torch.testing.assert_close(inputs[0], noised, rtol=1e-4, atol=1e-4)
    # the features: the captured activations, densely encoded, ranked by mean
    z = sae.encode(capture.before[0][:, :16]).double().reshape(-1, sae.d_sae)
    mean = z.mean(0)
    top = torch.sort(mean, descending=True, stable=True).indices[:5].tolist()
    assert scan.features == top
    torch.testing.assert_close(torch.tensor(scan.mean, dtype=torch.float64), mean[top], rtol=1e-4, atol=1e-6)
    assert scan.meta["percent"] == PERCENT and heatmaps.shape[0] == 5 and "top 5 features" in table


def test_percent_one_is_refused(tiny_world):
    model, clip, vae, sae = tiny_world
    with pytest.raises(ValueError, match=r"^percent must be in \[0, 1\)"):
        SAEImageFeatureScan.execute(model=model, sae=sae, image=red_circle(), vae=vae,
                                    positive=clip.encode_from_tokens_scheduled(clip.tokenize("")), site="double.img.out",
                                    block=1, tokens="image", percent=1.0, seed=0, top_n=3)


def test_registered():
    assert SAEImageFeatureScan in NODES
    assert SAEImageFeatureScan.define_schema().display_name == "SAE Feature Scan (Image)"
