"""Overhead of Measure Activation Scale over the plain sampling it rides on.

Builds a FLUX-architecture model at FLUX's width (hidden 3072, 24 heads of 128; depth cut down to
fit a CPU), samples it plainly and through ``SAEActivationScale`` (one site; all blocks; one site
with a 16x-wide TopK SAE), same inputs, and prints the median wall time of each and its ratio to
plain. Run from the repository root:

    python bench/bench_scale.py                      # defaults below
    python bench/bench_scale.py --hidden 768 --heads 6 --double 2 --single 4 --size 256 --repeats 3

The site-level cost is per measured block, so the share of a one-site measurement shrinks with
depth: full FLUX has 19 + 38 blocks (``--double 19 --single 38`` where memory allows).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))  # run as a script: the bootstrap
import comfyui_locator  # noqa: E402

comfyui_locator.register_pack()  # from here on the pack (with bench/ and harness/) is comfyui_sae_steering


def bootstrap():
    """ComfyUI on the path, forced onto the CPU, and the pack imported as ComfyUI would."""
    comfyui_locator.start_comfyui(comfyui_locator.locate_comfyui(), cpu=True)


class TapClock:
    """Seconds spent inside the recording taps (the measuring itself), summed over a run."""

    def __init__(self):
        self.seconds = 0.0

    def install(self, recorder_class):
        original = recorder_class.__call__
        clock = self

        def timed_call(recorder, activations, event):
            start = time.perf_counter()
            try:
                return original(recorder, activations, event)
            finally:
                clock.seconds += time.perf_counter() - start
        recorder_class.__call__ = timed_call  # bench only: the pack never patches classes


def interleaved(variants: dict, repeats: int, clock: TapClock) -> dict:
    """Median wall time and median tap time per variant; variants alternate so load drifts hit all alike."""
    for fn in variants.values():
        fn()  # warm-up: first call loads the model and allocates
    walls = {name: [] for name in variants}
    taps = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            clock.seconds = 0.0
            start = time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - start)
            taps[name].append(clock.seconds)
    return {name: (statistics.median(walls[name]), statistics.median(taps[name])) for name in variants}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=3072)
    parser.add_argument("--heads", type=int, default=24)
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (512 -> 1024 image tokens)")
    parser.add_argument("--text", type=int, default=256, help="text tokens (T5 gives >= 256)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    opts = parser.parse_args()
    bootstrap()
    import torch
    if opts.threads:
        torch.set_num_threads(opts.threads)
    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux, empty_latent, sample, tiny_conditioning
    from comfyui_sae_steering.nodes.measure.activation_scale_node import ALL_BLOCKS, SAEActivationScale
    from comfyui_sae_steering.nodes.measure.scale_recorder import ScaleRecorder
    from comfyui_sae_steering.harness.sae_factory import random_sae
    import comfy.utils

    head = opts.hidden // opts.heads
    axes = [head // 8, (head - head // 8) // 2, head - head // 8 - (head - head // 8) // 2]  # FLUX: 16, 56, 56
    model = build_tiny_flux(seed=0, hidden_size=opts.hidden, num_heads=opts.heads, depth=opts.double,
                            depth_single_blocks=opts.single, axes_dim=axes, context_in_dim=64)
    positive = tiny_conditioning(seed=1, text_tokens=opts.text)
    negative = tiny_conditioning(seed=2, text_tokens=opts.text)
    latent = empty_latent(opts.size, opts.size)
    sae = random_sae(d_in=opts.hidden, d_sae=16 * opts.hidden, k=16, seed=0)
    common = dict(steps=opts.steps, cfg=2.0, seed=0)

    def measure(site, with_sae=False):
        return lambda: SAEActivationScale.execute(
            model=model, positive=positive, negative=negative, latent={"samples": latent}, site=site,
            block=0, sampler_name="euler", scheduler="simple", sae=sae if with_sae else None, **common)

    tokens = (opts.size // 16) ** 2
    print(f"FLUX-architecture model: hidden {opts.hidden}, {opts.heads} heads, {opts.double} double + "
          f"{opts.single} single blocks; {tokens} image + {opts.text} text tokens, batch 2 (cfg 2), "
          f"{opts.steps} steps, median of {opts.repeats} interleaved repeats (torch threads: "
          f"{torch.get_num_threads()})")
    clock = TapClock()
    clock.install(ScaleRecorder)
    comfy.utils.PROGRESS_BAR_ENABLED = False  # the plain run has no bar either
    variants = {
        "plain sampling": lambda: sample(model, positive, negative, latent=latent, **common),
        "measure one site (double.img.out[0])": measure("double.img.out"),
        f"measure {ALL_BLOCKS} ({opts.double + opts.single} sites)": measure(ALL_BLOCKS),
        f"measure one site + SAE {opts.hidden}->{sae.d_sae} k=16": measure("double.img.out", True),
    }
    print_results(interleaved(variants, opts.repeats, clock))


def print_results(results: dict, width: int = 44):
    """The table of ``interleaved``'s results, against the variant named "plain sampling"."""
    plain = results["plain sampling"][0]
    print(f"{'':{width}s} {'wall s':>8s} {'ratio':>7s} {'in taps s':>10s} {'taps/plain':>10s}")
    for name, (wall, taps) in results.items():
        print(f"{name:{width}s} {wall:8.3f} {wall / plain:7.3f} {taps:10.3f} {taps / plain:9.1%}")


if __name__ == "__main__":
    main()
