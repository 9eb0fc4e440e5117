"""What steering at one site costs in each model family, next to the bare SAE encoder matmul on the same tokens.

Per family (FLUX.1, FLUX.2, Chroma, the SDXL / SD1.5 UNets, SD3/3.5, Qwen-Image, Lumina2, Z-Image, Wan 2.1 and
Wan 2.2: tiny models built as ComfyUI builds them; a new family is one more row of ``CASES``), one site is steered through the real ``SAESteer`` node (``add where active``: the full
encode, then the edit) during real ``comfy.sample.sample`` runs (euler, cfg 1: one forward per step). A probe
tap on the same site first records the tokens each forward hands over; the bare matmul ``x @ W_enc.T`` runs on
tensors of exactly those shapes. Variants are interleaved round by round, timed in process CPU seconds (a
shared machine's neighbours barely move them); printed are ratios of medians only:

- steering at the site / matmul: CPU time inside the family's tap where it handles the site's activations
  (rows and tokens selected, the callback, the result written back) over the matmuls: what steering one site
  costs, in encoder matmuls;
- callback / matmul: the steering callback alone (encode, top-k, edit, decode of the edited features); the
  difference to the column before is the tap's own share (token selection, reshapes, copies);
- steered / plain sampling: the whole sampling's slowdown (tiny models: small and noisy; it shrinks with depth).

Every site has the same tokens per forward (a 1/16 grid of the image; Wan: 4 frames of a 1/32 grid) and width 64,
except Z-Image, whose narrowest width is 256 (its modulation fixes a 256-wide time embedding).
At these tiny widths (64) the top-k and the elementwise work over [tokens, d_sae] weigh several matmuls, since the
matmul's cost grows with the width and they do not; at real widths (1280, 3072) the matmul dominates
(docs/benchmarks.md: steer / matmul about 1.2 at width 1024).

    python bench/family_overhead.py                 # 256 px, 2 steps, 7 rounds: about a minute on 2 CPU cores
    python bench/family_overhead.py --quick         # 64 px, 1 step, 1 round: seconds (what the tests run)
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))  # run as a script: the bootstrap
import comfyui_locator  # noqa: E402

comfyui_locator.register_pack()  # from here on the pack (with bench/ and harness/) is comfyui_sae_steering

import torch  # noqa: E402


def _flux_tap():
    from comfyui_sae_steering.nodes.sites.tap import SiteTap
    return SiteTap, "_apply"  # selects rows and tokens, calls the callback, writes the result back


def _unet_tap():
    from comfyui_sae_steering.nodes.sites.unet_tap import UNetTap
    return UNetTap, "_edit"  # the forward hook's work: [b, c, h, w] -> tokens, callback, back


def _flux(size: int):
    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux, empty_latent, tiny_conditioning
    return build_tiny_flux(seed=0), tiny_conditioning(seed=1), empty_latent(size, size)


def _unet(family: str):
    def build(size: int):
        from comfyui_sae_steering.harness.tiny_unet import build_tiny_unet, tiny_unet_conditioning
        return build_tiny_unet(family, seed=0), tiny_unet_conditioning(family, 1), torch.zeros(1, 4, size // 8, size // 8)
    return build


def _dit(name: str, frames: int = 0, divisor: int = 8, **overrides):
    """A tiny model of ``TINY_DITS[name]`` (``overrides`` change its unet_config) and an empty latent whose sides are
    the image's divided by ``divisor``, with ``frames`` frames (0: the family's own layout)."""
    def build(size: int):
        from comfyui_sae_steering.harness.tiny_dit import build_tiny_dit, tiny_dit_conditioning, tiny_dit_latent
        channels, *layout = tiny_dit_latent(name).shape[1:]
        depth = [frames] if frames else layout[:-2]  # Wan: frames; Qwen-Image: its 1-frame axis
        latent = torch.zeros(1, channels, *depth, size // divisor, size // divisor)
        return build_tiny_dit(name, seed=0, **overrides), tiny_dit_conditioning(name, 1), latent
    return build


# SD3's width is 64 x depth: depth 1 (one head of 64) over 3 joint blocks, its context embedder 64 wide to match
_SD3_64 = dict(depth=1, context_embedder_config={"target": "torch.nn.Linear",
                                                 "params": {"in_features": 32, "out_features": 64}})


@dataclass(frozen=True)
class Case:
    family: str                         # as printed
    site: str                           # a name of the SAESteer site input
    block: int
    build: Callable[[int], tuple]       # image side in px -> (MODEL, positive CONDITIONING, latent tensor)
    tap: Callable[[], tuple]            # -> (tap class, method): the tap's work on the activations at the site


# sites of the same width (64; Z-Image 256) and tokens (a 1/16 grid of the image) in every family: the same matmul.
# The DiT taps are the FLUX tap's machinery (DiTTap is a SiteTap): the same method does the work on the activations.
CASES = (
    Case("FLUX.1 (tiny, hidden 64)", "double.img.out", 0, _flux, _flux_tap),
    Case("SDXL (tiny UNet)", "up_blocks.0.attentions.1", 0, _unet("SDXL"), _unet_tap),
    Case("SD1.5 (tiny UNet)", "up_blocks.0.attentions.1", 0, _unet("SD15"), _unet_tap),
    Case("SD3/3.5 (tiny, width 64)", "transformer_blocks.out", 0, _dit("SD3", **_SD3_64), _flux_tap),
    Case("Qwen-Image (tiny, width 64)", "transformer_blocks.out", 0, _dit("QwenImage"), _flux_tap),
    Case("Lumina2 (tiny, width 64)", "layers.out", 0, _dit("Lumina2"), _flux_tap),
    Case("Z-Image (tiny, width 256)", "layers.out", 0, _dit("ZImage"), _flux_tap),
    Case("Wan 2.1 (tiny, 4 frames)", "blocks.out", 0, _dit("WAN21_T2V", frames=4, divisor=16), _flux_tap),
    Case("Wan 2.2 (tiny, 4 frames)", "blocks.out", 0, _dit("WAN22_T2V", frames=4, divisor=16), _flux_tap),
    Case("FLUX.2 (tiny, hidden 64)", "double.img.out", 0, _dit("Flux2", divisor=16), _flux_tap),
    Case("Chroma (tiny, hidden 64)", "double.img.out", 0, _dit("Chroma"), _flux_tap),
)
QUICK = dict(size=64, steps=1, repeats=1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="64 px, 1 step, 1 round: a smoke run")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (a multiple of 16)")
    p.add_argument("--steps", type=int, default=2, help="sampling steps per run")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds, each runs every variant once")
    p.add_argument("--expansion", type=int, default=16, help="SAE width as a multiple of the site's width")
    p.add_argument("--k", type=int, default=16, help="TopK k of the SAE")
    p.add_argument("--families", default="", help="comma-separated substrings of the family names (default: all)")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if args.size % 16 or min(args.steps, args.repeats) < 1:
        p.error("--size must be a multiple of 16, --steps and --repeats >= 1")
    return args


@contextlib.contextmanager
def time_inside(cls, method: str, seconds: list[float]):
    """CPU seconds spent in ``cls.<method>``, added to ``seconds[0]``; the class is restored afterwards."""
    original = getattr(cls, method)

    def timed(instance, *args, **kwargs):
        start = time.process_time()
        try:
            return original(instance, *args, **kwargs)
        finally:
            seconds[0] += time.process_time() - start
    setattr(cls, method, timed)  # bench only: the pack never patches classes
    try:
        yield
    finally:
        setattr(cls, method, original)


def site_shapes(model, case: Case, positive, latent, steps: int) -> list[tuple[int, ...]]:
    """[rows, tokens, width] of what the site hands over, per forward of one sampling (a recording tap)."""
    from comfyui_sae_steering.harness.tiny_flux import sample
    from comfyui_sae_steering.nodes.sites.any_site import attach_site
    from comfyui_sae_steering.nodes.sites.tap import TapSpec

    shapes = []
    probe, _ = attach_site(model, TapSpec(case.site, case.block), lambda x, event: shapes.append(tuple(x.shape)))
    sample(probe, positive, latent=latent, steps=steps, cfg=1.0)
    return shapes


def measure_case(case: Case, args) -> dict:
    from comfyui_sae_steering.harness.sae_factory import random_sae
    from comfyui_sae_steering.harness.tiny_flux import sample
    from comfyui_sae_steering.nodes.steer.sae_steer_node import SAESteer
    from comfyui_sae_steering.nodes.steer.steer_callback import SteerCallback

    model, positive, latent = case.build(args.size)
    shapes = site_shapes(model, case, positive, latent, args.steps)
    width = shapes[0][-1]
    sae = random_sae(d_in=width, d_sae=args.expansion * width, k=args.k, seed=1)
    steered = SAESteer.execute(model=model, sae=sae, site=case.site, block=case.block, tokens="image", features="0:1.0",
                               strength=1.0, mode="add where active", keep_error=True, start_percent=0.0,
                               end_percent=1.0, apply_to="both").result[0]
    inputs = [torch.randn(rows * tokens, d) for rows, tokens, d in shapes]  # one sampling's forwards
    W_enc = sae.W_enc
    run = lambda m: sample(m, positive, latent=latent, steps=args.steps, cfg=1.0)  # noqa: E731
    variants = {"plain": lambda: run(model), "steered": lambda: run(steered),
                "matmul": lambda: [x @ W_enc.T for x in inputs]}
    in_tap, in_callback = [0.0], [0.0]
    times = {name: [] for name in [*variants, "tap", "callback"]}
    with time_inside(*case.tap(), in_tap), time_inside(SteerCallback, "__call__", in_callback):
        for fn in variants.values():
            fn()  # warm-up: first calls allocate and load
        for r in range(args.repeats):
            names = list(variants)[r % len(variants):] + list(variants)[:r % len(variants)]  # rotate the order
            for name in names:
                in_tap[0] = in_callback[0] = 0.0
                start = time.process_time()
                variants[name]()
                times[name].append(time.process_time() - start)
                if name == "steered":
                    times["tap"].append(in_tap[0])
                    times["callback"].append(in_callback[0])
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = lambda a, b: median[a] / median[b] if median[b] > 0 else float("nan")  # noqa: E731  (a coarse clock)
    return dict(case=case, tokens=shapes[0][0] * shapes[0][1], forwards=len(shapes), width=width, d_sae=sae.d_sae,
                tap=ratio("tap", "matmul"), callback=ratio("callback", "matmul"), slowdown=ratio("steered", "plain"))


def run(args) -> list[dict]:
    import comfy.utils

    from comfyui_sae_steering.nodes.sites.any_site import describe_site

    chosen = [c for c in CASES if not args.families or any(f.strip().lower() in c.family.lower()
                                                           for f in args.families.split(","))]
    print(f"{args.size}² px, {args.steps} step(s) per sampling (euler, cfg 1), SAE {args.expansion}x the site's width, "
          f"k={args.k}, add where active; medians of {args.repeats} interleaved round(s), torch threads "
          f"{torch.get_num_threads()}", flush=True)
    print("\n| family | site | tokens / forward | SAE | steering at the site / matmul | callback / matmul | "
          "steered / plain sampling |\n"
          "|---|---|---|---|---|---|---|")
    results = []
    bar = comfy.utils.PROGRESS_BAR_ENABLED
    comfy.utils.PROGRESS_BAR_ENABLED = False  # no bar in any variant
    try:
        with torch.inference_mode():  # as ComfyUI runs a prompt
            for case in chosen:
                r = measure_case(case, args)
                print(f"| {case.family} | {describe_site(case.site, case.block)} | {r['tokens']} | {r['width']} -> "
                      f"{r['d_sae']} | {r['tap']:.2f} | {r['callback']:.2f} | {r['slowdown']:.3f} |", flush=True)
                results.append(r)
    finally:
        comfy.utils.PROGRESS_BAR_ENABLED = bar
    return results


def main(argv=None):
    args = parse_args(argv)
    comfyui_locator.start_comfyui(comfyui_locator.locate_comfyui(), cpu=True)
    run(args)


if __name__ == "__main__":
    main()
