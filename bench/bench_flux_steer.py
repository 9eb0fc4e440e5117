"""Step time of FLUX with and without SAE steering at one site, next to the SAE encode's FLOP share.

The model is FLUX.1-dev's config at full width (hidden 3072, 24 heads, T5 context 4096, CLIP-L pooled
768, axes_dim [16, 56, 56]) built as ComfyUI builds it, random weights, with the depth cut down on a
CPU. Each variant samples through the real ``comfy.sample.sample`` (euler, cfg 1: one forward per
step) at 1024 image tokens (512×512 px) and 256 T5 tokens; steering goes through the real
``SAEFluxSteer`` node with a random 16×-wide TopK SAE (3072 → 49152, k=16). Variants are
interleaved round by round (the order rotates) so that a noisy machine slows all of them alike;
ratios are medians of the per-round ratios to the unsteered run of the same round.

    python bench/bench_flux_steer.py                      # CPU: FLUX width, 1 double block, fp32: 0.5-3 min
    python bench/bench_flux_steer_gpu.py                  # GPU: full FLUX (19 + 38 blocks), bf16
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))  # run as a script: the bootstrap
import comfyui_locator  # noqa: E402

comfyui_locator.register_pack()  # from here on the pack (with bench/ and harness/) is comfyui_sae_steering
from comfyui_sae_steering.harness.tiny_flux import FLUX_DEV_CONFIG  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
UNSTEERED = "unsteered"
MODES = ("add", "add where active")  # add needs no encode; add where active needs the full encode
LATENT_SCALE = 8   # FLUX's VAE: latent = pixels / 8
CPU_DEFAULTS = dict(depth_double=1, depth_single=0, dtype="fp32", repeats=3, warmup=0, steps=1)
FULL_DEFAULTS = dict(depth_double=19, depth_single=38, dtype="bf16", repeats=20, warmup=3, steps=6)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu (default) or cuda (default with --full)")
    p.add_argument("--full", action="store_true",
                   help="full FLUX.1 on a GPU: 19 double + 38 single blocks, bf16, 20 rounds of 6 steps")
    p.add_argument("--depth-double", type=int, default=None, help="double blocks (default 1; 19 with --full)")
    p.add_argument("--depth-single", type=int, default=None, help="single blocks (default 0; 38 with --full)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="model weights (CPU default fp32)")
    p.add_argument("--image-px", type=int, default=512, help="square image side in pixels (512 -> 1024 tokens)")
    p.add_argument("--text-tokens", type=int, default=256, help="T5 tokens in the conditioning")
    p.add_argument("--expansion", type=int, default=16, help="SAE width as a multiple of 3072")
    p.add_argument("--k", type=int, default=16, help="TopK k of the SAE")
    p.add_argument("--site", default="double.img.out")
    p.add_argument("--block", type=int, default=0)
    p.add_argument("--features", default="0:1.0", help="SAEFluxSteer features input")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds, each runs every variant once")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed rounds first (CPU default 0: the rotation and the median absorb a slow first call)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps per call; with 2+ the first step (setup included) is not timed")
    p.add_argument("--chunk-tokens", type=int, default=None,
                   help="add a variant: add where active with the SAE's token chunk set to this")
    p.add_argument("--steer-alone", action="store_true",
                   help="also time sae.steer alone on a tensor of the site's shape, per mode")
    p.add_argument("--tf32", action="store_true",
                   help="let fp32 matmuls (the SAE maths) use TF32 on CUDA; ComfyUI leaves this off")
    p.add_argument("--build-only", action="store_true", help="build, patch and count FLOPs; time nothing")
    args = p.parse_args(argv)
    defaults = FULL_DEFAULTS if args.full else CPU_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.device is None:
        args.device = "cuda" if args.full else "cpu"
    if args.image_px % (LATENT_SCALE * FLUX_DEV_CONFIG["patch_size"]):
        p.error(f"--image-px {args.image_px} must be a multiple of 16 (VAE 8 × patch 2)")
    if min(args.depth_double, args.depth_single) < 0 or args.depth_double + args.depth_single == 0:
        p.error("need at least one block (--depth-double / --depth-single)")
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--repeats and --steps must be >= 1, --warmup >= 0")
    return args


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds once the device has done its queued work. On a shared CPU the
    process's CPU time (all its threads) counts the work done; wall time counts the neighbours too."""
    synchronize(device)
    return time.perf_counter(), time.process_time()


class StepClock:
    """``comfy.sample.sample`` callback: a ``now`` mark after every step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.marks: list[tuple[float, float]] = []

    def __call__(self, step, x0, x, total_steps):
        self.marks.append(now(self.device))


def time_step(model, positive, latent, steps: int, device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds per sampling step. One step: the whole call (setup is ms next to seconds on a
    CPU); several: the steps after the first, so model loading and conditioning setup are left out."""
    from comfyui_sae_steering.harness.tiny_flux import sample

    clock = StepClock(device)
    start = now(device)
    sample(model, positive, latent=latent, steps=steps, cfg=1.0, seed=0, callback=clock)
    first, steps_timed = (start, 1) if steps == 1 else (clock.marks[0], len(clock.marks) - 1)
    return tuple((end - begin) / steps_timed for begin, end in zip(first, clock.marks[-1]))


def time_steer_alone(sae, edits, x: torch.Tensor) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``sae.steer`` call, what the tap's callback does per forward."""
    start = now(x.device)
    sae.steer(x, edits)
    return tuple(end - begin for begin, end in zip(start, now(x.device)))


def build(args):
    """(config, {variant: (ModelPatcher, SAE or None, edits)}, positive, latent, image tokens)."""
    import copy

    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux, empty_latent, tiny_conditioning
    from comfyui_sae_steering.nodes.steer.feature_spec import edits_for, parse_features
    from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
    from comfyui_sae_steering.harness.sae_factory import random_sae

    config = {**FLUX_DEV_CONFIG, "depth": args.depth_double, "depth_single_blocks": args.depth_single}
    model = build_tiny_flux(seed=0, dtype=DTYPES[args.dtype], device=args.device, **config)
    d = config["hidden_size"]
    sae = random_sae(d_in=d, d_sae=args.expansion * d, k=args.k, seed=1).to(args.device)
    plans = [(mode, mode, sae) for mode in MODES]
    if args.chunk_tokens:  # the same tensors, another token chunk for the encode
        chunked = copy.copy(sae)
        chunked.chunk_tokens = args.chunk_tokens
        plans.append((f"{MODES[-1]}, chunk {args.chunk_tokens}", MODES[-1], chunked))
    variants = {UNSTEERED: (model, None, [])}
    for name, mode, steer_sae in plans:
        patched = SAEFluxSteer.execute(
            model=model, sae=steer_sae, site=args.site, block=args.block, tokens="image", features=args.features,
            strength=1.0, mode=mode, keep_error=True, start_percent=0.0, end_percent=1.0, apply_to="both",
        ).result[0]
        variants[name] = (patched, steer_sae, edits_for(parse_features(args.features, 1.0, sae.d_sae), mode))
    positive = tiny_conditioning(seed=2, text_tokens=args.text_tokens, context_dim=config["context_in_dim"])
    latent = empty_latent(args.image_px, args.image_px)
    img_tokens = (args.image_px // (LATENT_SCALE * config["patch_size"])) ** 2
    return config, variants, positive, latent, img_tokens


def flop_lines(config, img_tokens, txt_tokens, d_sae) -> tuple[list[str], float]:
    from comfyui_sae_steering.bench.flux_flops import flux_forward_flops, sae_encode_flops

    encode = sae_encode_flops(img_tokens, config["hidden_size"], d_sae)
    here = flux_forward_flops(config, img_tokens, txt_tokens)["total"]
    full = flux_forward_flops(FLUX_DEV_CONFIG, img_tokens, txt_tokens)["total"]
    lines = [f"SAE encode 2·{img_tokens}·{config['hidden_size']}·{d_sae} = {encode / 1e9:.1f} GFLOP",
             f"forward at this depth ({config['depth']}+{config['depth_single_blocks']}): {here / 1e9:.1f} GFLOP, "
             f"encode share {100 * encode / here:.1f} % -> FLOP-predicted ratio {1 + encode / here:.3f}",
             f"forward of full FLUX (19+38): {full / 1e12:.2f} TFLOP, "
             f"encode share {100 * encode / full:.2f} % -> FLOP-predicted ratio {1 + encode / full:.4f}"]
    return lines, 1 + encode / here


def run(args):
    device = torch.device(args.device)
    config, variants, positive, latent, img_tokens = build(args)
    sae = variants[MODES[0]][1]
    print(f"FLUX width {config['hidden_size']}, {config['num_heads']} heads, {config['depth']} double + "
          f"{config['depth_single_blocks']} single blocks, {args.dtype} on {device}; {img_tokens} image tokens "
          f"({args.image_px}² px), {args.text_tokens} text tokens; SAE {sae.d_in} -> {sae.d_sae}, k={sae.k}, "
          f"fp32 maths{' (TF32)' if args.tf32 else ''}, at {args.site} block {args.block}; "
          f"{args.repeats} rounds of {args.steps} step(s), {args.warmup} warm-up", flush=True)
    flops, predicted = flop_lines(config, img_tokens, args.text_tokens, sae.d_sae)
    if args.build_only:
        print("\n".join(flops))
        return
    names = list(variants)
    # the callback's own work, alone, on activations of the site's shape and dtype
    alone = [name for name in names if name != UNSTEERED] if args.steer_alone else []
    alone_x = torch.randn(1, img_tokens, config["hidden_size"], device=device, dtype=DTYPES[args.dtype])
    times = {name: [] for name in names + [f"sae.steer alone: {n}" for n in alone]}
    for r in range(args.warmup + args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        measured = {name: time_step(variants[name][0], positive, latent, args.steps, device) for name in order}
        for name in alone:
            measured[f"sae.steer alone: {name}"] = time_steer_alone(*variants[name][1:], alone_x)
        label = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}"
        print(f"{label}: " + ", ".join(f"{n} {t[0]:.3f}s ({t[1]:.1f} CPU s)" for n, t in measured.items()),
              flush=True)
        if r >= args.warmup:
            for name, t in measured.items():
                times[name].append(t)
    # CPU time only means something on a CPU run (a GPU run's host thread mostly waits)
    metrics = {"wall": 0, "CPU": 1} if device.type == "cpu" else {"wall": 0}
    ratios = {(name, m): statistics.median(t[i] / b[i] for t, b in zip(ts, times[UNSTEERED]))
              for name, ts in times.items() for m, i in metrics.items()}
    header = " | ".join(f"median {m} s/step | {m} / unsteered" for m in metrics)
    print(f"\n| variant | {header} |\n|---|" + "---|---|" * len(metrics))
    for name, ts in times.items():
        cells = " | ".join(f"{statistics.median(t[i] for t in ts):.3f} | {ratios[name, m]:.3f}"
                           for m, i in metrics.items())
        print(f"| {name} | {cells} |")
    print("\n".join(["", *flops]))
    measured = ", ".join(f"{ratios[MODES[-1], m]:.3f} ({m})" for m in metrics)
    print(f"add where active / unsteered: measured {measured}, FLOP-predicted {predicted:.3f}")


def main(argv=None):
    args = parse_args(argv)
    comfyui_locator.start_comfyui(comfyui_locator.locate_comfyui(allow_clone=False), cpu=args.device == "cpu")
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    with torch.inference_mode():  # as ComfyUI runs a prompt
        run(args)


if __name__ == "__main__":
    main()
