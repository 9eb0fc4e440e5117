"""The FLUX steering benchmark: its FLOP count equals torch's count of a real forward; its GPU mode's settings."""
import pytest
from torch.utils.flop_counter import FlopCounterMode

from comfyui_sae_steering.bench.bench_flux_steer import parse_args
from comfyui_sae_steering.bench.flux_flops import flux_forward_flops, sae_encode_flops
from comfyui_sae_steering.harness.tiny_flux import TINY_FLUX_CONFIG, build_tiny_flux, empty_latent, sample, \
    tiny_conditioning


@pytest.mark.parametrize("overrides,pixels,text_tokens", [
    ({}, 64, 8),                                                     # 16 image tokens
    ({"depth": 1, "depth_single_blocks": 3, "guidance_embed": False, "mlp_ratio": 2.0}, 32, 5),
])
def test_forward_flops_match_torch_counter(overrides, pixels, text_tokens):
    model = build_tiny_flux(seed=0, **overrides)
    positive = tiny_conditioning(seed=1, text_tokens=text_tokens)
    with FlopCounterMode(display=False) as counter:
        sample(model, positive, latent=empty_latent(pixels, pixels), steps=1, cfg=1.0)  # one forward
    img_tokens = (pixels // 16) ** 2
    counted = flux_forward_flops({**TINY_FLUX_CONFIG, **overrides}, img_tokens, text_tokens)
    assert counted["total"] == counter.get_total_flops()
    assert counted["total"] == counted["double"] + counted["single"] + counted["outer"]


def test_sae_encode_flops():
    assert sae_encode_flops(1024, 3072, 49152) == 2 * 1024 * 3072 * 49152


def test_full_mode_defaults_and_overrides():
    full = parse_args(["--full"])
    assert (full.device, full.dtype, full.depth_double, full.depth_single) == ("cuda", "bf16", 19, 38)
    assert full.steps > 1 and full.warmup > 0  # setup left out of the timed steps, warm-up rounds first
    smoke = parse_args(["--full", "--device", "cpu", "--depth-double", "1", "--depth-single", "1"])
    assert (smoke.device, smoke.dtype, smoke.depth_double, smoke.depth_single) == ("cpu", "bf16", 1, 1)
    cpu = parse_args([])
    assert (cpu.device, cpu.dtype, cpu.depth_double, cpu.depth_single, cpu.steps) == ("cpu", "fp32", 1, 0, 1)
