"""What a feature scan costs next to plain and steered sampling: medians of interleaved repeats.

    python bench/feature_scan_cost.py                                  # small FLUX on the CPU, seconds
    python bench/feature_scan_cost.py --hidden 3072 --heads 24 --d-sae 49152 --size 512 --steps 2

The model is FLUX's architecture at the chosen width and depth with random weights; the SAE is
random TopK. A scan is one sampling plus, per forward at the site, one sparse encode and its
accumulation (the "tap" time, which does not depend on the machine's load), plus drawing the
heatmaps once. With only a few blocks here, the ratio to plain sampling is an upper bound of
what a 57-block FLUX sees. Shares the bootstrap and the timing loop of ``bench_scale.py``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))  # run as a script: the bootstrap
import comfyui_locator  # noqa: E402

comfyui_locator.register_pack()  # from here on the pack (with bench/ and harness/) is comfyui_sae_steering

from comfyui_sae_steering.bench.bench_scale import TapClock, bootstrap, interleaved, print_results  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--depth", type=int, default=2, help="double blocks (single blocks: the same)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--site", default="double.img.out")
    opts = parser.parse_args()
    bootstrap()

    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux, empty_latent, sample, tiny_conditioning
    from comfyui_sae_steering.nodes.scan.feature_scan_node import SAEFeatureScan
    from comfyui_sae_steering.nodes.scan.scan_recorder import ScanRecorder
    from comfyui_sae_steering.nodes.sites.tap import TapSpec, attach_tap
    from comfyui_sae_steering.nodes.steer.steer_callback import SteerCallback
    from comfyui_sae_steering.harness.sae_factory import random_sae
    from comfyui_sae_steering.sae import Edit

    head_dim = opts.hidden // opts.heads
    axes = [head_dim - 2 * (head_dim * 3 // 8), head_dim * 3 // 8, head_dim * 3 // 8]  # even, sum = head_dim
    model = build_tiny_flux(seed=0, hidden_size=opts.hidden, num_heads=opts.heads, depth=opts.depth,
                            depth_single_blocks=opts.depth, axes_dim=axes)
    sae = random_sae(d_in=opts.hidden, d_sae=opts.d_sae, k=opts.k, seed=0)
    positive, contrast = tiny_conditioning(seed=1), tiny_conditioning(seed=2)
    latent = empty_latent(opts.size, opts.size)
    common = dict(site=opts.site, block=0, tokens="image", steps=opts.steps, seed=0, cfg=1.0, sampler_name="euler",
                  scheduler="simple", top_n=16, latent={"samples": latent})
    steered, _ = attach_tap(model, TapSpec(opts.site, 0), SteerCallback(sae, [Edit(0, "add", 1.0, True)]),
                            d_in=sae.d_in)
    import comfy.utils
    comfy.utils.PROGRESS_BAR_ENABLED = False  # the plain runs have no bar either
    clock = TapClock()
    clock.install(ScanRecorder)
    clock.install(SteerCallback)
    medians = interleaved({
        "plain sampling": lambda: sample(model, positive, latent=latent, steps=opts.steps, cfg=1.0),
        "steered sampling": lambda: sample(steered, positive, latent=latent, steps=opts.steps, cfg=1.0),
        "scan": lambda: SAEFeatureScan.execute(model=model, sae=sae, positive=positive, **common),
        "scan with contrast": lambda: SAEFeatureScan.execute(model=model, sae=sae, positive=positive,
                                                             contrast=contrast, **common),
    }, opts.repeats, clock)
    tokens = (opts.size // 16) ** 2
    print(f"FLUX-architecture hidden {opts.hidden}, {opts.depth}+{opts.depth} blocks, {tokens} image tokens, {opts.steps} steps; "
          f"SAE {opts.hidden}->{opts.d_sae} k={opts.k} at {opts.site}; medians of {opts.repeats} (CPU)")
    print_results(medians, width=20)


if __name__ == "__main__":
    main()
