"""The demo's latent decode: ComfyUI's preview projection, checked against the formula written here."""
import pytest
import torch

import comfy.latent_formats

from comfyui_sae_steering.demo.latent_rgb import latent_to_rgb


def test_matches_the_latent_rgb_factors_projection_and_upscales():
    fmt = comfy.latent_formats.Flux()
    latent = torch.randn(2, 16, 3, 5, generator=torch.Generator().manual_seed(0)) * 2
    image = latent_to_rgb(latent, fmt, upscale=4)
    assert image.shape == (2, 12, 20, 3) and image.dtype == torch.float32
    x = (latent - fmt.shift_factor) * fmt.scale_factor  # process_in
    rgb = torch.einsum("bchw,cr->bhwr", x, torch.tensor(fmt.latent_rgb_factors))
    expected = ((rgb + torch.tensor(fmt.latent_rgb_factors_bias) + 1) / 2).clamp(0, 1)
    # the previewer quantises to 8 bits
    assert torch.allclose(image[:, ::4, ::4], expected, atol=1 / 255 + 1e-6)
    assert torch.equal(image[:, 1::4, 2::4], image[:, ::4, ::4])  # each latent pixel is a 4x4 block


def test_input_is_not_mutated_and_bad_shapes_are_refused():
    fmt = comfy.latent_formats.Flux()
    latent = torch.randn(1, 16, 2, 2)
    before = latent.clone()
    latent_to_rgb(latent, fmt)
    assert torch.equal(latent, before)
    with pytest.raises(ValueError, match="16"):
        latent_to_rgb(torch.zeros(1, 4, 2, 2), fmt)
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        latent_to_rgb(torch.zeros(16, 2, 2), fmt)
