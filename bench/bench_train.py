"""The pack's SAE trainer against EleutherAI sparsify on the same harvested activations.

Harvests a FLUX-architecture model's activations with the harvest node's own code (real ComfyUI
sampling, random prompts), then trains a TopK SAE on the same shards twice, same width, k, batch,
tokens, token order, Adam learning rate and warm-up, AuxK weight and dead-latent horizon:
- the pack: ``sae.train_shards.train_on_shards`` (what ``python -m sae.train`` runs);
- sparsify 1.3.3: its ``SparseCoder`` and the training step of its ``Trainer`` (b_dec from the first
  batch's mean, unit-norm decoder, batch-variance FVU + AuxK, gradient projection, Adam with
  ``get_linear_schedule_with_warmup``), fed batch by batch from the same shard streams.
Both SAEs are scored by the same code on the same held-out sample (the sparsify one is saved in its
own layout and read back through the pack's loader). One table: FVU, dead fraction, tokens/s.

sparsify is only needed here, never by the pack. Install it beside the shared venv without touching
its pinned packages (the modules the SparseCoder imports; its Trainer module is not imported):

    python -m pip install --no-deps --target bench/.sparsify eai-sparsify==1.3.3 natsort simple-parsing \\
        docstring-parser accelerate

Run from the repository root (CPU):

    python bench/bench_train.py                                  # harvest (once) + both trainers
    python bench/bench_train.py --harvest-memory 20              # peak RSS harvesting 20 and 200 prompts
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPARSIFY = ROOT / "bench" / ".sparsify"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))  # run as a script: the bootstrap
import comfyui_locator  # noqa: E402

comfyui_locator.register_pack()  # from here on the pack (with bench/ and harness/) is comfyui_sae_steering
from comfyui_sae_steering.bench.bench_scale import bootstrap  # noqa: E402


def model_config(hidden: int) -> dict:
    heads = 4
    head = hidden // heads
    return dict(hidden_size=hidden, num_heads=heads, axes_dim=[head - 2 * (head * 3 // 8), head * 3 // 8,
                                                             head * 3 // 8])


def run_harvest(opts, folder: Path) -> dict:
    bootstrap()
    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux, tiny_conditioning
    from comfyui_sae_steering.nodes.train.harvest_node import harvest

    model = build_tiny_flux(seed=0, **model_config(opts.hidden))
    items = [(f"random prompt {i}", tiny_conditioning(seed=1000 + i, text_tokens=opts.text_tokens))
             for i in range(opts.prompts)]
    return harvest(model, items, None, opts.site, opts.block, "all", opts.size, opts.size, opts.steps, 0, 1.0,
                   "euler", "simple", "bf16", str(folder), opts.prompts_per_shard)


def torch_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def import_sparsify():
    """sparsify's SparseCoder without running its package __init__ (whose Trainer needs datasets etc.)."""
    if not (SPARSIFY / "sparsify").is_dir():
        raise SystemExit(f"sparsify is not installed in {SPARSIFY}: see this script's docstring")
    sys.path.insert(0, str(SPARSIFY))
    if not torch_cuda():
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # its Triton decoder needs a GPU
    package = types.ModuleType("sparsify")
    package.__path__ = [str(SPARSIFY / "sparsify")]
    sys.modules["sparsify"] = package
    from sparsify.config import SparseCoderConfig
    from sparsify.sparse_coder import SparseCoder
    return SparseCoder, SparseCoderConfig


def train_sparsify(shards, opts, d_sae, steps, lr, warmup, dead_after):
    """sparsify's Trainer step (fvu loss, Adam) on batches from the same streams as the pack's run."""
    import torch
    from transformers import get_linear_schedule_with_warmup
    from comfyui_sae_steering.sae.shard_stream import ShardStream

    SparseCoder, SparseCoderConfig = import_sparsify()
    torch.manual_seed(opts.seed)
    sae = SparseCoder(shards.d_in, SparseCoderConfig(num_latents=d_sae, k=opts.k), "cpu", dtype=torch.float32)
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    since_fired = torch.zeros(d_sae, dtype=torch.long)
    feed = ShardStream(shards, 0, 1, opts.seed, 8192, 8)
    started = time.perf_counter()
    for step in range(steps):
        x = feed.take(opts.batch).float()
        if step == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x, dead_mask=since_fired > dead_after)
        (out.fvu + opts.auxk_coef * out.auxk_loss).backward()
        fired = torch.zeros(d_sae, dtype=torch.bool)
        fired[out.latent_indices.flatten()] = True
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        since_fired += opts.batch
        since_fired[fired] = 0
    seconds = time.perf_counter() - started
    sae.set_decoder_norm_to_unit_norm()
    return sae, seconds


def compare(opts, folder: Path) -> list[dict]:
    import torch
    bootstrap()  # ComfyUI started, the pack imported as ComfyUI imports it
    from comfyui_sae_steering.sae import load_sae
    from comfyui_sae_steering.sae.activation_shards import ActivationShards
    from comfyui_sae_steering.sae.train import _evaluate
    from comfyui_sae_steering.sae.train_shards import TrainSettings, sample_tokens, train_on_shards

    torch.set_num_threads(opts.threads)
    shards = ActivationShards.open(folder)
    d_sae = opts.expansion * shards.d_in
    steps = opts.tokens // opts.batch
    lr = 2e-4 / (d_sae / 2 ** 14) ** 0.5
    warmup = max(1, min(1000, steps // 10))
    dead_after = min(10_000_000, shards.total_tokens)
    settings = TrainSettings(d_sae=d_sae, k=opts.k, batch_size=opts.batch, tokens=opts.tokens, lr=lr,
                             warmup_steps=warmup, auxk_coef=opts.auxk_coef, seed=opts.seed, streams=1,
                             checkpoint_every=10 ** 9, log_every=max(1, steps // 10))
    work = Path(opts.work)
    held_out = sample_tokens(shards, opts.eval_tokens, opts.seed + 1)

    def pack_run():
        shutil.rmtree(work / "pack.safetensors.checkpoints", ignore_errors=True)
        sae, report = train_on_shards(folder, work / "pack.safetensors", settings, device="cpu")
        return sae, report.seconds

    def sparsify_run():
        sae, seconds = train_sparsify(shards, opts, d_sae, steps, lr, warmup, dead_after)
        sae.save_to_disk(work / "sparsify_sae")
        return load_sae(work / "sparsify_sae"), seconds

    runs = {"pack (sae.train)": pack_run, "sparsify 1.3.3": sparsify_run}
    rows = {}
    for repeat in range(opts.repeats):  # alternate the order: the machine's load drifts
        for name in (list(runs) if repeat % 2 == 0 else list(runs)[::-1]):
            sae, wall = runs[name]()
            fvu, dead = _evaluate(sae, held_out)
            row = rows.setdefault(name, {"trainer": name, "fvu": fvu, "dead_fraction": dead, "seconds": wall})
            row["seconds"] = min(row["seconds"], wall)
            row["tokens_per_second"] = steps * opts.batch / row["seconds"]
    rows = list(rows.values())
    return rows


def harvest_peak_rss(opts, prompts: int) -> float:
    """Peak RSS (MiB) of a fresh process that harvests ``prompts`` prompts."""
    work = Path(opts.work) / f"rss_{prompts}"
    shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, __file__, "--harvest-only", "--prompts", str(prompts), "--work", str(work),
               "--hidden", str(opts.hidden), "--size", str(opts.size), "--steps", str(opts.steps),
               "--prompts-per-shard", str(opts.prompts_per_shard)]
    done = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/bench_train", help="harvest and SAE files go here")
    parser.add_argument("--hidden", type=int, default=256, help="the model's width = the SAE's d_in")
    parser.add_argument("--site", default="single.out")
    parser.add_argument("--block", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--text-tokens", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (256: 256 image tokens)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts-per-shard", type=int, default=8)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=4096 * 300)
    parser.add_argument("--auxk-coef", type=float, default=1 / 32)
    parser.add_argument("--eval-tokens", type=int, default=65536)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="training runs of each (tokens/s: the fastest)")
    parser.add_argument("--harvest-only", action="store_true")
    parser.add_argument("--harvest-memory", type=int, default=0, metavar="N",
                        help="measure peak RSS harvesting N and 10 N prompts (fresh processes), then stop")
    opts = parser.parse_args()
    folder = Path(opts.work) / "harvest"
    if opts.harvest_only:
        run_harvest(opts, folder)
        print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    if opts.harvest_memory:
        rss = {n: harvest_peak_rss(opts, n) for n in (opts.harvest_memory, 10 * opts.harvest_memory)}
        small, large = rss[opts.harvest_memory], rss[10 * opts.harvest_memory]
        print(f"peak RSS harvesting {opts.harvest_memory} prompts: {small:.0f} MiB; "
              f"{10 * opts.harvest_memory} prompts: {large:.0f} MiB ({large / small - 1:+.1%})")
        return
    if not (folder / "manifest.json").exists():
        started = time.perf_counter()
        done = run_harvest(opts, folder)
        print(f"harvested {done['tokens']} tokens ({done['d_in']}-d) in {time.perf_counter() - started:.0f} s")
    rows = compare(opts, folder)
    print(f"\n{opts.tokens} training tokens, batch {opts.batch}, d_in {opts.hidden}, "
          f"{opts.expansion}x ({opts.expansion * opts.hidden} latents), k {opts.k}, {opts.threads} CPU threads; "
          f"FVU and dead fraction on {opts.eval_tokens} sampled tokens")
    print(f"{'trainer':20s} {'FVU':>8s} {'dead':>7s} {'tokens/s':>10s} {'wall s':>8s}   (fastest of {opts.repeats})")
    for r in rows:
        print(f"{r['trainer']:20s} {r['fvu']:8.4f} {r['dead_fraction']:7.1%} {r['tokens_per_second']:10,.0f} "
              f"{r['seconds']:8.1f}")
    (Path(opts.work) / "bench_train.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
