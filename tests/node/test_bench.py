"""The test bench itself: the real ComfyUI is imported and the tiny FLUX samples."""
import sys

import torch

from comfyui_sae_steering.harness.tiny_flux import sample


def test_real_comfyui_is_imported():
    import comfy.model_management
    import nodes

    assert "comfy" in sys.modules and hasattr(nodes, "NODE_CLASS_MAPPINGS")
    assert "KSampler" in nodes.NODE_CLASS_MAPPINGS  # ComfyUI's nodes, not the pack's
    assert comfy.model_management.get_torch_device().type == "cpu"


def test_tiny_flux_samples_deterministically(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    first = sample(tiny_flux, positive, negative, steps=3, cfg=2.0, seed=7)
    again = sample(tiny_flux, positive, negative, steps=3, cfg=2.0, seed=7)
    other = sample(tiny_flux, positive, negative, steps=3, cfg=2.0, seed=8)
    assert first.shape == (1, 16, 4, 4)
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert first.abs().max() > 0.01  # the model did something: not an all-zero latent


def test_tiny_flux_depends_on_conditioning(tiny_flux, tiny_cond):
    positive, negative = tiny_cond
    a = sample(tiny_flux, positive, steps=2, seed=3)
    b = sample(tiny_flux, negative, steps=2, seed=3)
    assert not torch.allclose(a, b)
