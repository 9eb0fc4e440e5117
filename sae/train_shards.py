"""Train a TopK SAE on harvested activation shards, on one process or data-parallel under torchrun.

One step = one global batch of ``batch_size`` tokens, drawn from ``streams`` shuffled shard streams
(``sae.shard_stream``); under torchrun each rank reads its own streams, DDP averages the gradients
(gloo on CPUs, NCCL on GPUs) and the dead-latent counters are merged, so the run follows the same
trajectory as one process with the same global batch, streams and seed (up to float summation
order). Adam with linear warm-up and a linear decay over the last part of the run; the decoder rows
stay unit norm. Rank 0 writes a checkpoint every ``checkpoint_every`` steps (a restarted run resumes
from it, bit for bit on the same machine) and, at the end, the SAE in the pack's own file format.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist

from .activation_shards import ActivationShards
from .formats import pack
from .shard_stream import ShardStream, _generator
from .topk_model import NORMALIZATIONS, TopKSAEModule, input_scale, normalise
from .train import _evaluate, geometric_median

log = logging.getLogger(__name__)
CHECKPOINT = "last.state"  # not an SAE extension: Load SAE never lists a checkpoint
# settings that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"checkpoint_every", "log_every", "eval_tokens"}


@dataclass
class TrainSettings:
    d_sae: int | None = None          # latents; default expansion × d_in
    expansion: int = 16
    k: int = 32
    batch_size: int = 4096            # tokens per optimiser step, over all ranks
    tokens: int | None = None         # training tokens; default one pass over the data
    lr: float | None = None           # default sparsify's Adam rule: 2e-4 / sqrt(d_sae / 2^14)
    warmup_steps: int = 1000          # capped at a tenth of the run
    decay_fraction: float = 0.2       # the last part of the run decays the learning rate linearly to 0
    auxk_coef: float = 1 / 32
    dead_after_tokens: int = 10_000_000  # capped at the data's token count
    normalize: str = "scalar"         # scalar | layer_norm | none
    seed: int = 0
    streams: int | None = None        # shuffled data streams; default the number of ranks
    block_tokens: int = 8192
    buffer_blocks: int = 8
    init_tokens: int = 16384          # sample for b_dec, the input scale and the FVU's variance
    eval_tokens: int = 65536          # sample for the final FVU and dead fraction
    checkpoint_every: int = 500
    log_every: int = 50

    def check(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize {self.normalize!r} is not one of {', '.join(NORMALIZATIONS)}")
        for name in ("expansion", "k", "batch_size", "block_tokens", "buffer_blocks", "init_tokens", "eval_tokens",
                     "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")


@dataclass
class ShardTrainReport:
    fvu: float                 # on the evaluation sample (rank 0; nan on other ranks)
    dead_fraction: float       # latents that never fire on the evaluation sample
    steps: int
    tokens: int                # training tokens (steps × batch)
    d_in: int
    d_sae: int
    k: int
    seconds: float             # wall time of the training steps run by this call
    tokens_per_second: float
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, batch FVU, dead fraction)
    resumed_from: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def learning_rate(step: int, steps: int, peak: float, warmup: int, decay_fraction: float) -> float:
    """Linear warm-up over ``warmup`` steps, flat, then linear to 0 over the last ``decay_fraction``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    decay_start = steps - int(steps * decay_fraction)
    if step >= decay_start:
        return peak * (steps - step) / max(1, steps - decay_start)
    return peak


def sample_tokens(shards: ActivationShards, n: int, seed: int, runs: int = 64) -> torch.Tensor:
    """About ``n`` tokens [n, d_in] (fp32) from ``runs`` random stretches across all shards."""
    total = shards.total_tokens
    if n >= total:
        return torch.cat([shards.read(i, 0, f.tokens) for i, f in enumerate(shards.files)]).float()
    length = max(1, n // runs)
    starts = torch.randint(0, total, (runs,), generator=_generator(seed, -1)).tolist()
    bounds = torch.tensor([f.tokens for f in shards.files]).cumsum(0).tolist()
    parts = []
    for offset in starts:
        index = next(i for i, b in enumerate(bounds) if offset < b)
        tokens = shards.files[index].tokens
        start = min(offset - (bounds[index] - tokens), max(0, tokens - length))
        parts.append(shards.read(index, start, start + min(length, tokens)))
    return torch.cat(parts).float()


class _Ranks:
    """torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK) or a single process."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.started_group = False
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.started_group = True

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def any(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.started_group:
            dist.destroy_process_group()


def train_on_shards(data, out, settings: TrainSettings | None = None, *, hook: str | None = None,
                    checkpoint_dir=None, device: str = "auto", on_step=None):
    """Train on the shards in folder ``data`` and write the SAE to ``out`` (the pack's .safetensors).

    Returns ``(SparseAutoencoder, ShardTrainReport)``. ``hook`` defaults to ``"<site>.<block>"`` from the
    harvest manifest (so ``site = auto`` finds it). ``checkpoint_dir`` defaults to ``<out>.checkpoints``;
    a checkpoint there from the same settings is resumed. ``on_step(step, steps, batch_fvu)`` after each step.
    Every check of the data (corrupt or mismatched shards) runs before training starts.
    """
    settings = settings or TrainSettings()
    settings.check()
    shards = ActivationShards.open(data)
    ranks = _Ranks(device)
    try:
        return _train(shards, Path(out), settings, hook, checkpoint_dir, ranks, on_step)
    finally:
        ranks.close()


def _train(shards, out, settings, hook, checkpoint_dir, ranks, on_step):
    d_in = shards.d_in
    d_sae = settings.d_sae or settings.expansion * d_in
    streams = settings.streams or ranks.world
    if streams % ranks.world:
        raise ValueError(f"streams ({streams}) must be a multiple of the number of processes ({ranks.world})")
    if settings.batch_size % streams:
        raise ValueError(f"batch_size ({settings.batch_size}) must be a multiple of streams ({streams})")
    tokens = settings.tokens or shards.total_tokens
    steps = tokens // settings.batch_size
    if steps < 1:
        raise ValueError(f"{tokens} training tokens make no step of batch_size {settings.batch_size}")
    if not 0 < settings.k <= d_sae:
        raise ValueError(f"k must be in 1..d_sae ({d_sae}), got {settings.k}")
    per_stream = settings.batch_size // streams
    feeds = [ShardStream(shards, s, streams, settings.seed, settings.block_tokens, settings.buffer_blocks)
             for s in range(ranks.rank, streams, ranks.world)]

    sample = sample_tokens(shards, settings.init_tokens, settings.seed)
    scale = input_scale(sample) if settings.normalize == "scalar" else 1.0
    x0 = normalise(sample, settings.normalize, scale)
    token_variance = (x0 - x0.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12).to(ranks.device)
    module = TopKSAEModule(d_in, d_sae, settings.k, torch.Generator().manual_seed(settings.seed),
                           geometric_median(x0)).to(ranks.device)
    module.auxk_coef = settings.auxk_coef
    peak_lr = settings.lr or 2e-4 / (d_sae / 2 ** 14) ** 0.5
    warmup = max(1, min(settings.warmup_steps, steps // 10))
    optimizer = torch.optim.Adam(module.parameters(), lr=peak_lr)
    dead_after = min(settings.dead_after_tokens, shards.total_tokens)
    k_aux = min(d_in // 2, d_sae)
    since_fired = torch.zeros(d_sae, dtype=torch.long, device=ranks.device)

    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else out.with_name(out.name + ".checkpoints")
    identity = {**{k: v for k, v in asdict(settings).items() if k not in RESUMABLE_CHANGES},
                "d_in": d_in, "d_sae": d_sae, "streams": streams, "data_tokens": shards.total_tokens}
    start = _resume(checkpoint_dir / CHECKPOINT, identity, module, optimizer, since_fired)
    for feed in feeds:
        feed.seek(start * per_stream)

    model = module
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(module, device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None)
    history: list[tuple[int, float, float]] = []
    started = time.perf_counter()
    with torch.enable_grad():
        for step in range(start, steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, steps, peak_lr, warmup, settings.decay_fraction)
            x = torch.cat([feed.take(per_stream) for feed in feeds]).to(ranks.device, torch.float32)
            x = normalise(x, settings.normalize, scale)
            loss, squared, fired_indices = model(x, since_fired >= dead_after, token_variance, k_aux, ranks.sum,
                                                 ranks.world)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            module.remove_parallel_gradient()
            optimizer.step()
            module.renormalise_decoder()
            with torch.no_grad():
                fired = torch.zeros(d_sae, dtype=torch.int32, device=ranks.device)
                fired[fired_indices] = 1
                fired = ranks.any(fired).bool()
                since_fired += settings.batch_size
                since_fired[fired] = 0
            if step % settings.log_every == 0 or step == steps - 1:
                fvu = float(ranks.sum(squared) / (settings.batch_size * token_variance))
                seen = (step + 1) * settings.batch_size
                dead = float((since_fired >= min(dead_after, seen)).float().mean())
                history.append((step, fvu, dead))
                log.info("step %d/%d: batch FVU %.4f, dead %.1f%%, lr %.2e", step + 1, steps, fvu, 100 * dead,
                         optimizer.param_groups[0]["lr"])
            if on_step is not None:
                on_step(step + 1, steps, history[-1][1] if history else float("nan"))
            if (step + 1) % settings.checkpoint_every == 0 or step == steps - 1:
                if ranks.rank == 0:
                    _save_checkpoint(checkpoint_dir / CHECKPOINT, identity, step + 1, module, optimizer, since_fired)
                ranks.barrier()
    seconds = time.perf_counter() - started

    site, block = shards.manifest.get("site"), shards.manifest.get("block")
    if hook is None and site is not None and block is not None:
        hook = f"{site}.{block}"
    sae = module.to_sparse_autoencoder(settings.normalize, scale, hook, source=f"sae.train:{shards.folder}")
    fvu = dead = float("nan")
    if ranks.rank == 0:
        fvu, dead = _evaluate(sae, sample_tokens(shards, settings.eval_tokens, settings.seed + 1))
        training = {"site": site, "block": block, "model": shards.manifest.get("model"),
                    "normalization": {"kind": settings.normalize, "scale": scale},
                    "training_tokens": steps * settings.batch_size, "steps": steps,
                    "batch_size": settings.batch_size, "lr": peak_lr, "seed": settings.seed, "fvu": fvu,
                    "dead_fraction": dead, "data": str(shards.folder)}
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        pack.write(sae, tmp, training=training)
        os.replace(tmp, out)
        log.info("Trained a TopK SAE %d -> %d (k=%d) on %d tokens: FVU %.4f, %.1f%% dead latents; wrote %s",
                 d_in, d_sae, settings.k, steps * settings.batch_size, fvu, 100 * dead, out)
    ranks.barrier()
    run = steps - start
    report = ShardTrainReport(fvu, dead, steps, steps * settings.batch_size, d_in, d_sae, settings.k, seconds,
                              run * settings.batch_size / seconds if run and seconds > 0 else 0.0, history, start)
    return sae, report


def _save_checkpoint(path: Path, identity: dict, step: int, module, optimizer, since_fired) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"identity": json.dumps(identity, sort_keys=True), "step": step, "module": module.state_dict(),
             "optimizer": optimizer.state_dict(), "since_fired": since_fired}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill during the save leaves the previous checkpoint intact


def _resume(path: Path, identity: dict, module, optimizer, since_fired) -> int:
    """Load the checkpoint at ``path`` into the run (same settings only); the step to continue from."""
    if not path.exists():
        return 0
    try:
        state = torch.load(path, map_location=since_fired.device, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: unreadable checkpoint ({err}); delete it to start afresh") from None
    saved = json.loads(state["identity"])
    changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if changed:
        diffs = ", ".join(f"{k} {saved.get(k)!r} -> {identity.get(k)!r}" for k in changed)
        raise ValueError(f"{path} is a checkpoint of other settings ({diffs}): use the same settings to resume, "
                         f"or another checkpoint folder")
    module.load_state_dict(state["module"])
    optimizer.load_state_dict(state["optimizer"])
    since_fired.copy_(state["since_fired"])
    log.info("Resuming from %s at step %d", path, state["step"])
    return int(state["step"])


def settings_from(values: dict) -> TrainSettings:
    """A ``TrainSettings`` from a dict (unknown keys are an error naming them)."""
    known = {f.name for f in fields(TrainSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(unknown)}")
    return TrainSettings(**values)
