"""Regional mask weights on image and video token grids, against a per-token mean computed by hand."""
from __future__ import annotations

import torch

from comfyui_sae_steering.sae.region import token_weights


def by_hand(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Mean of the mask pixels under each token of an h × w grid (the mask divides evenly), row-major."""
    H, W = mask.shape
    return torch.stack([mask[i * H // h:(i + 1) * H // h, j * W // w:(j + 1) * W // w].mean()
                        for i in range(h) for j in range(w)])


def test_image_grid_is_the_mean_under_each_token():
    mask = torch.rand(8, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(token_weights(mask, (4, 3)), by_hand(mask, 4, 3).unsqueeze(0))


def test_video_grid_weighs_every_frame_alike_frame_after_frame():
    mask = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))
    weights = token_weights(mask, (3, 4, 2))
    assert weights.shape == (2, 3 * 4 * 2)
    for b in range(2):
        torch.testing.assert_close(weights[b], by_hand(mask[b], 4, 2).repeat(3))
