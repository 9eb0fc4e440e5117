"""The pack's main job, headless: steer FLUX with SAE features through ComfyUI's real executor.

    bash scripts/demo [--out DIR] [--fast]                # embedded default: Tiny World, steered
    bash scripts/demo --random-flux [--fast] [...]          # a random tiny FLUX, SAE trained on the spot
    bash scripts/demo --unet F --clip-l F --t5 F --vae F --sae F   # example workflow 1 on real models

Embedded default: Tiny World (``demo/tiny_world_job.py``): the shipped tiny FLUX trained on coloured
shapes, steered with its SAE's "blue" feature; a grid of unsteered vs steered images, the scale report
and plot, and an effectiveness table read by the project's pixel classifier.

``--random-flux``: a tiny FLUX-architecture model (random weights, built in code), its activations
recorded at one site during real sampling, a TopK SAE trained on them (FVU printed), saved into a
temporary ``models/sae``; then ComfyUI's ``PromptExecutor`` runs Load SAE -> Measure Activation
Scale -> SAE Steer FLUX (``add where active``, strength in units of the feature's measured mean)
-> KSampler, beside an unsteered KSampler, and saves both images, the scale report and plot.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .headless import (PACK_ROOT, PromptFailed, add_model_file, copy_outputs, import_from_harness, pack_module,
                       require_nodes, run_prompt, start_comfyui)

PACK_NODES = ("SAELoader", "SAEActivationScale", "SAEFluxSteer")
REAL_MODEL_FLAGS = {"unet": "SAE_DEMO_UNET", "clip_l": "SAE_DEMO_CLIP_L", "t5": "SAE_DEMO_T5",
                    "vae": "SAE_DEMO_VAE", "sae": "SAE_DEMO_SAE"}
REAL_MODEL_HELP = {"unet": "FLUX diffusion model file (UNETLoader)", "clip_l": "CLIP-L text encoder file",
                   "t5": "T5-XXL text encoder file", "vae": "FLUX VAE file",
                   "sae": "SAE file, or folder with config.json/cfg.json and weights"}
EXAMPLE_WORKFLOW = PACK_ROOT / "example_workflows" / "flux_measure_then_steer.json"
SAE_FILE = "demo_topk_sae.safetensors"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="output/demo", help="output folder (default: ./output/demo)")
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"),
                   help="ComfyUI checkout (default: $COMFYUI_PATH, else found as the tests find it)")
    p.add_argument("--fast", action="store_true", help="smaller everything: seconds, for the tests")
    p.add_argument("--random-flux", action="store_true",
                   help="instead of Tiny World: a random-weight tiny FLUX with an SAE trained on the spot")
    tiny = p.add_argument_group("embedded default (tiny FLUX)")
    both = p.add_argument_group("both runs (real models: default = the workflow's own values)")
    both.add_argument("--site", default=None, help="site measured and steered (tiny default: double.img.out)")
    both.add_argument("--block", type=int, default=None, help="block index at that site (tiny default: 1)")
    both.add_argument("--feature", type=int, default=None, help="feature to steer (tiny default: chosen from the data)")
    both.add_argument("--strength", type=float, default=None,
                      help="steering strength in units of the feature's measured mean (tiny default: 4)")
    tiny.add_argument("--size", type=int, default=None, help="image size in pixels (default 256, fast 128)")
    tiny.add_argument("--steps", type=int, default=None, help="sampling steps (default 8, fast 4)")
    tiny.add_argument("--seed", type=int, default=0, help="noise seed of both branches")
    tiny.add_argument("--train-steps", type=int, default=None, help="SAE training steps (default 400, fast 150)")
    tiny.add_argument("--d-sae", type=int, default=512, help="SAE width (default 512 = 4x the hidden size)")
    tiny.add_argument("--k", type=int, default=16, help="TopK k (default 16)")
    real = p.add_argument_group("real models: run example workflow 1 on them (flags or environment)")
    for flag, env in REAL_MODEL_FLAGS.items():
        real.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=os.environ.get(env),
                          help=f"{REAL_MODEL_HELP[flag]} (env {env})")
    real.add_argument("--cpu", action="store_true", help="real models: run on the CPU (default: ComfyUI's device)")
    args = p.parse_args(argv)
    given = [f for f in REAL_MODEL_FLAGS if getattr(args, f)]
    if given and len(given) != len(REAL_MODEL_FLAGS):
        missing = [f"--{f.replace('_', '-')} / {REAL_MODEL_FLAGS[f]}" for f in REAL_MODEL_FLAGS if f not in given]
        p.error(f"real-model run needs all five files; missing: {', '.join(missing)}")
    args.real = bool(given)
    if not args.real and args.random_flux:
        args.site = args.site or "double.img.out"
        args.block = 1 if args.block is None else args.block
        args.strength = 4.0 if args.strength is None else args.strength
    args.size = args.size or (128 if args.fast else 256)
    args.steps = args.steps or (4 if args.fast else 8)
    args.train_steps = args.train_steps or (150 if args.fast else 400)
    return args


def locate_comfyui(explicit: str | None) -> Path:
    locator = import_from_harness("comfyui_locator")
    if explicit:
        os.environ["COMFYUI_PATH"] = explicit
    try:
        return locator.locate_comfyui()
    except locator.ComfyUINotFound as err:
        sys.exit(f"error: {err}")


def main(argv=None) -> int:
    args = parse_args(argv)
    comfyui = locate_comfyui(args.comfyui)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sae-demo-") as work:
        work = Path(work)
        t = time.perf_counter()
        start_comfyui(comfyui, work, cpu=args.cpu or not args.real or not has_accelerator())
        print(f"ComfyUI {comfyui} started headless with the pack loaded in {time.perf_counter() - t:.1f} s")
        try:
            require_nodes(*PACK_NODES)
            if args.real:
                written = run_real_models(args, work, out)
            elif args.random_flux:
                written = run_tiny(args, work, out)
            else:
                written = run_tiny_world(args, out)
        except (PromptFailed, FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    print(f"\nDone in {time.perf_counter() - started:.1f} s. Written to {out}:")
    for name in written:
        print(f"  {out / name}")
    return 0


def has_accelerator() -> bool:
    """Whether ComfyUI's default device would work; without one the real models run on the CPU."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


# ---- embedded default: Tiny World ---------------------------------------------------------------
def run_tiny_world(args, out: Path) -> list[str]:
    from . import tiny_world_job

    return tiny_world_job.run(out, seeds=2 if args.fast else 4,
                              strengths=(4.0, 8.0) if args.fast else (1.0, 2.0, 4.0, 8.0),
                              strength=args.strength if args.strength is not None else tiny_world_job.STRENGTH)


# ---- --random-flux: a random tiny FLUX, SAE trained on the spot --------------------------------
def run_tiny(args, work: Path, out: Path) -> list[str]:
    pack = pack_module("sae.formats.pack")
    DEMO_FLUX = import_from_harness("tiny_flux").DEMO_FLUX  # noqa: N806

    from .comfy_nodes import register_demo_nodes
    from .comparison import write_comparison
    from .steering_prompt import SteeringSettings, steering_prompt

    register_demo_nodes()
    settings = SteeringSettings(sae_name=SAE_FILE, site=args.site, block=args.block, feature=-1,
                                strength=args.strength, width=args.size, height=args.size, steps=args.steps,
                                seed=args.seed)
    print(f"Tiny FLUX: hidden {DEMO_FLUX['hidden_size']}, {DEMO_FLUX['depth']} double + "
          f"{DEMO_FLUX['depth_single_blocks']} single blocks, {args.size}x{args.size} px "
          f"({(args.size // 16) ** 2} image tokens), {args.steps} euler steps, CPU")
    sae, report, positive_run = train_demo_sae(args, settings)
    sae_path = work / "models" / "sae" / SAE_FILE
    pack.write(sae, sae_path)
    add_model_file("sae", sae_path)
    shutil.copyfile(sae_path, out / SAE_FILE)
    settings.feature, freq, mean = steered_feature(sae, positive_run, args.feature)
    print(f"Steering feature {settings.feature} (fires on {freq:.0%} of the positive run's image tokens, mean "
          f"{mean:.3g} when active) with add where active, strength {args.strength:g} x its measured mean")

    t = time.perf_counter()
    prompt = steering_prompt(settings)
    history = run_prompt(prompt)
    print(f"Ran the steering workflow through ComfyUI's PromptExecutor in {time.perf_counter() - t:.1f} s")
    written = copy_outputs(prompt, history, work, out)
    (out / "training_report.json").write_text(json.dumps(
        {**report.as_dict(), "site": args.site, "block": args.block, "feature": settings.feature,
         "feature_frequency": freq, "feature_mean": mean, "strength_x_feature_mean": args.strength}, indent=2) + "\n")
    difference = write_comparison(out / "unsteered.png", out / "steered.png", out / "comparison.png")
    print(f"Steered vs unsteered: mean absolute pixel difference {difference:.2f} / 255 (comparison.png: "
          "unsteered | steered | where they differ)")
    return sorted(written) + ["comparison.png", "training_report.json", SAE_FILE]


def train_demo_sae(args, settings):
    """Record the site's activations over a few samplings of the tiny FLUX and train a TopK SAE on
    them; returns the SAE, its training report and the positive run's activations."""
    import torch

    from .record import record_site

    train_topk_sae = pack_module("sae.train").train_topk_sae
    tiny_conditioning = import_from_harness("tiny_flux").tiny_conditioning
    demo_flux = import_from_harness("tiny_flux_nodes").SAEDemoTinyFlux.build

    t = time.perf_counter()
    prompts = 2 if args.fast else 4
    # the first recording is exactly the demo's positive branch (same conditioning and noise seed)
    conditionings = [tiny_conditioning(seed=settings.positive_seed + i) for i in range(prompts)]
    per_prompt = record_site(pack_module("nodes.sites.tap"), demo_flux(settings.model_seed), args.site, args.block,
                             conditionings, args.size, args.size, args.steps, args.seed)
    activations = torch.cat(per_prompt)
    print(f"Recorded {activations.shape[0]} activations [{activations.shape[1]}] at {args.site} block {args.block} "
          f"over {prompts} samplings in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    sae, report = train_topk_sae(activations, d_sae=args.d_sae, k=args.k, steps=args.train_steps, lr=4e-3,
                                 seed=args.seed, batch_size=512, hook=f"{args.site}.{args.block}")
    print(f"Trained a TopK SAE {sae.d_in} -> {sae.d_sae} (k={sae.k}) in {report.steps} steps, "
          f"{time.perf_counter() - t:.1f} s: FVU {report.fvu:.3f} (first batch {report.fvu_history[0][1]:.3f}), "
          f"{report.dead_fraction:.1%} dead latents")
    return sae, report, per_prompt[0]


def steered_feature(sae, positive_run, requested: int | None) -> tuple[int, float, float]:
    """(feature, its firing frequency, its mean when active) on the positive run; the requested one or
    one chosen by ``choose_feature``."""
    SAEStats = pack_module("sae.sae_stats").SAEStats  # noqa: N806

    if requested is not None and not 0 <= requested < sae.d_sae:
        raise ValueError(f"--feature {requested} is out of range for the demo SAE's {sae.d_sae} features")
    stats = SAEStats(sae.d_sae, sae.d_in)
    stats.update(sae, positive_run)
    summary = stats.summary()
    feature = requested if requested is not None else choose_feature(summary)
    return feature, summary["feature_frequency"][feature], summary["feature_mean"][feature]


def choose_feature(summary: dict) -> int:
    """A feature the SAE really uses on the positive run, local enough for ``add where active`` to
    show structure: the largest total activation (frequency × mean) among features firing on at most
    half of the tokens; any feature that fired if none does."""
    scored = [(f * m, i) for i, (f, m) in enumerate(zip(summary["feature_frequency"], summary["feature_mean"]))
              if f > 0]
    if not scored:
        raise RuntimeError("the trained SAE fires on no token of the positive run: nothing to steer")
    local = [s for s in scored if summary["feature_frequency"][s[1]] <= 0.5]
    return max(local or scored)[1]


# ---- real models: example workflow 1 -----------------------------------------------------------
def run_real_models(args, work: Path, out: Path) -> list[str]:
    from .workflow_run import run_example_workflow

    files = {flag: getattr(args, flag) for flag in REAL_MODEL_FLAGS}
    overrides = {name: getattr(args, name) for name in ("site", "block", "feature", "strength")}
    print(f"Running example workflow 1 ({EXAMPLE_WORKFLOW.name}) on: "
          + ", ".join(f"{flag}={Path(path).name}" for flag, path in files.items()))
    return run_example_workflow(EXAMPLE_WORKFLOW, files, work, out, overrides)


if __name__ == "__main__":
    sys.exit(main())
