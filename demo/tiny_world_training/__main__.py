"""Retrain Tiny World's models into ``nodes/tiny_world/weights`` (or ``--out``), stage by stage.

    python -m demo.tiny_world_training [--stages vae,flux,flux_more,vae_decoder,sae] [--out DIR]

Seeds are fixed, so a rerun on the same machine and thread count gives the same files. Each stage
reads what the stages before it wrote (the VAE's latents train FLUX; FLUX's activations train the
SAE); ``vae_decoder`` sharpens the VAE's decoder alone, so the latents FLUX learnt stay valid. Runs on one CPU thread: on a shared 2-core machine that is faster than two contending ones.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ..headless import PACK_ROOT, import_from_harness

STAGES = ("vae", "flux", "flux_more", "vae_decoder", "sae")
SEEDS = {"vae": 1, "vae_stats": 2, "flux_data": 3, "flux": 4, "sae": 5, "flux_more": 6, "vae_decoder": 8}


def progress_printer(name: str):
    started = time.perf_counter()

    def report(step: int, total: int, message: str):
        if step % max(1, total // 20) == 0 or step == total - 1:
            elapsed = time.perf_counter() - started
            sys.stdout.write(f"\r[{name}] {step + 1}/{total} {message}  {elapsed:.0f} s")
            sys.stdout.flush()
            if step == total - 1:
                sys.stdout.write("\n")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.tiny_world_training", description=__doc__.splitlines()[0])
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, from {', '.join(STAGES)}")
    p.add_argument("--out", default=None, help="weights folder (default: the pack's nodes/tiny_world/weights)")
    p.add_argument("--vae-steps", type=int, default=900)
    p.add_argument("--decoder-steps", type=int, default=600)
    p.add_argument("--flux-steps", type=int, default=3000)
    p.add_argument("--flux-images", type=int, default=4000)
    p.add_argument("--sae-seeds", type=int, default=8, help="samplings per prompt recorded for the SAE")
    p.add_argument("--sae-steps", type=int, default=3000, help="SAE training steps")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        p.error(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")

    locator = import_from_harness("comfyui_locator")
    locator.start_comfyui(locator.locate_comfyui(), cpu=True)
    import torch
    torch.set_num_threads(1)
    from . import stages as run

    out = Path(args.out) if args.out else PACK_ROOT / "nodes" / "tiny_world" / "weights"
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "training.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for stage in stages:
        started = time.perf_counter()
        record[stage] = getattr(run, f"stage_{stage}")(out, args, SEEDS, progress_printer(stage))
        record[stage]["wall_seconds"] = round(time.perf_counter() - started, 1)
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        sys.stdout.write(f"[{stage}] done in {record[stage]['wall_seconds']} s: "
                         f"{json.dumps({k: v for k, v in record[stage].items() if not isinstance(v, (dict, list))})}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
