"""``python -m sae.train DATA --out FILE``: train a TopK SAE on a folder of activation shards.

Data-parallel on many GPUs or machines with torchrun's usual flags, e.g.
``torchrun --nproc-per-node 8 -m sae.train DATA --out sae.safetensors`` (NCCL on GPUs, gloo on CPUs);
multi-node: add ``--nnodes N --node-rank R --rdzv-endpoint HOST:PORT``. A run that is stopped resumes
from its last checkpoint when started again with the same arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields

from .train_shards import TrainSettings, train_on_shards

_HELP = {
    "d_sae": "latents (default expansion × d_in)", "expansion": "latents per input channel when --d-sae is not given",
    "k": "latents kept per token", "batch_size": "tokens per optimiser step, over all processes",
    "tokens": "training tokens (default one pass over the data)",
    "lr": "peak learning rate (default 2e-4 / sqrt(d_sae / 16384), sparsify's rule for Adam)",
    "warmup_steps": "linear warm-up steps (at most a tenth of the run)",
    "decay_fraction": "last fraction of the run over which the learning rate falls linearly to 0",
    "auxk_coef": "weight of the AuxK loss for dead latents", "dead_after_tokens": "a latent not fired for this many tokens is dead",
    "normalize": "input normalisation, recorded in the file: scalar (folded into the weights), layer_norm, none",
    "seed": "initialisation and data order", "streams": "shuffled data streams (default: the number of processes; "
    "keep it fixed to get the same run on any number of processes)",
    "block_tokens": "contiguous tokens read at once", "buffer_blocks": "blocks shuffled together per stream",
    "init_tokens": "data sample for b_dec, the input scale and the FVU's variance",
    "eval_tokens": "data sample for the final FVU and dead fraction",
    "checkpoint_every": "steps between checkpoints", "log_every": "steps between log lines",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sae.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="folder of activation shards (SAE Harvest Activations' output, or any "
                                     "folder of .safetensors files each holding one [tokens, d_in] tensor)")
    parser.add_argument("--out", required=True, help="the SAE file to write (.safetensors; put it in models/sae/)")
    parser.add_argument("--hook", default=None, help="site recorded in the file (default <site>.<block> from the manifest)")
    parser.add_argument("--checkpoint-dir", default=None, help="default: <out>.checkpoints")
    parser.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when there is a GPU), cpu, cuda:N")
    parser.add_argument("--report", default=None, help="also write the training report here (JSON)")
    for f in fields(TrainSettings):
        kind = {"int | None": int, "float | None": float}.get(str(f.type), None) or type(f.default)
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default, help=_HELP.get(f.name))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in fields(TrainSettings)})
    _, report = train_on_shards(args.data, args.out, settings, hook=args.hook, checkpoint_dir=args.checkpoint_dir,
                                device=args.device)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report.as_dict(), f, indent=1)
    return 0
