"""A small, fast TopK SAE trainer (the recipe of Gao et al. 2024 / EleutherAI sparsify).

Meant for activations that fit in memory (the demo trains on a tiny FLUX's activations in
seconds). The recipe: the shared bias starts at the data's geometric median, decoder rows are unit
norm (renormalised after each step, their gradient made orthogonal to them), the encoder starts as
the decoder's transpose, Adam, and an auxiliary TopK loss that makes dead latents predict the
residual so they come back. Deterministic for a seed (on one machine and thread count: float sums
are not associative).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch

from .autoencoder import SparseAutoencoder
from .sae_stats import SAEStats

log = logging.getLogger(__name__)

DEAD_AFTER_TOKENS = 10_000_000  # sparsify's default dead-latent horizon; shortened below for small data
AUXK_COEF = 1 / 32  # sparsify's weight of the auxiliary (dead-latent) loss


@dataclass
class TrainReport:
    """What a training run did: final FVU on all the data, its history and the dead latents."""

    fvu: float
    fvu_history: list[tuple[int, float]] = field(default_factory=list)  # (step, FVU of that batch)
    dead_fraction: float = 0.0
    steps: int = 0
    tokens: int = 0
    d_in: int = 0
    d_sae: int = 0
    k: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def geometric_median(points: torch.Tensor, iterations: int = 50, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of distances, robust to outliers."""
    median = points.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - median).norm() < eps * (1 + median.norm()):
            return new
        median = new
    return median


def _preactivations(x, W_enc, b_enc, b_dec):
    return torch.relu((x - b_dec) @ W_enc.T + b_enc)


def _decode(values, indices, W_dec, b_dec):
    # dense on purpose: the backward of a gather of decoder rows accumulates in a thread-dependent
    # order on the CPU, which would break determinism for a seed; a scatter + matmul does not
    z = torch.zeros(values.shape[0], W_dec.shape[0], dtype=values.dtype, device=values.device)
    return z.scatter(1, indices, values) @ W_dec + b_dec


def _check_inputs(activations, d_sae, k, steps, lr, batch_size):
    if activations.ndim != 2 or activations.shape[0] < 2:
        raise ValueError(f"activations must be [tokens, d_in] with at least 2 tokens, got {tuple(activations.shape)}")
    if not torch.isfinite(activations).all():
        raise ValueError(f"activations {tuple(activations.shape)} contain inf or NaN")
    if not 0 < k <= d_sae:
        raise ValueError(f"k must be in 1..d_sae ({d_sae}), got {k}")
    if steps < 1 or lr <= 0 or batch_size < 1:
        raise ValueError(f"steps ({steps}) and batch_size ({batch_size}) must be ≥ 1 and lr ({lr}) > 0")


def train_topk_sae(activations: torch.Tensor, d_sae: int, k: int, steps: int = 1000, lr: float = 2e-3,
                   seed: int = 0, batch_size: int = 1024, log_every: int = 100, hook: str | None = None):
    """Train a TopK SAE on ``activations`` [N, d_in]; returns ``(SparseAutoencoder, TrainReport)``.

    The SAE encodes TopK(ReLU(W_enc (x − b) + b_enc)) and decodes z W_dec + b with one shared
    bias b (``b_pre`` = ``b_dec``), like sparsify. Runs in fp32 on the activations' device.
    ``hook`` names the activation site the activations came from (stored as the SAE's ``hook``).
    """
    _check_inputs(activations, d_sae, k, steps, lr, batch_size)
    started = time.perf_counter()
    x_all = activations.detach().to(torch.float32)
    n, d_in = x_all.shape
    device = x_all.device
    generator = torch.Generator(device="cpu").manual_seed(seed)

    W_dec = torch.randn(d_sae, d_in, generator=generator).to(device)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_dec.requires_grad_(True)
    W_enc = W_dec.detach().clone().requires_grad_(True)  # encoder = decoder transpose ([d_sae, d_in] both)
    b_enc = torch.zeros(d_sae, device=device, requires_grad=True)
    b_dec = geometric_median(x_all).requires_grad_(True)
    optimizer = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=lr)

    batch_size = min(batch_size, n)
    # a latent is dead when it has not fired for this many tokens; small data needs a short horizon
    dead_after = min(DEAD_AFTER_TOKENS, max(batch_size, 2 * n))
    tokens_since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    k_aux = min(d_in // 2, d_sae)
    history: list[tuple[int, float]] = []
    # the batch FVU divides by the whole data's variance per token: one constant, no per-batch sum
    token_variance = (x_all - x_all.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
    with torch.enable_grad():
        for step in range(steps):
            rows = torch.randint(0, n, (batch_size,), generator=generator).to(device)
            x = x_all[rows]
            pre = _preactivations(x, W_enc, b_enc, b_dec)
            values, indices = pre.topk(k, dim=-1, sorted=False)
            error = x - _decode(values, indices, W_dec, b_dec)
            fvu = error.pow(2).sum() / (batch_size * token_variance)
            loss = fvu + AUXK_COEF * _auxk_loss(pre, error, W_dec, tokens_since_fired >= dead_after, k_aux)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            _remove_parallel_gradient(W_dec)
            optimizer.step()
            with torch.no_grad():
                W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
                fired = torch.zeros(d_sae, dtype=torch.bool, device=device)
                fired[indices[values > 0]] = True
                tokens_since_fired += batch_size
                tokens_since_fired[fired] = 0
            if step % log_every == 0 or step == steps - 1:
                history.append((step, float(fvu.detach())))
                log.debug("SAE training step %d: batch FVU %.4f", step, history[-1][1])

    with torch.no_grad():
        sae = SparseAutoencoder(W_enc.detach().clone(), b_enc.detach().clone(), W_dec.detach().clone(),
                                b_dec.detach().clone(), arch="topk", k=k, b_pre=b_dec.detach().clone(), hook=hook,
                                source="sae.train.train_topk_sae")
        final_fvu, dead = _evaluate(sae, x_all)
    report = TrainReport(fvu=final_fvu, fvu_history=history, dead_fraction=dead, steps=steps, tokens=n, d_in=d_in,
                         d_sae=d_sae, k=k, seconds=time.perf_counter() - started)
    log.info("Trained a TopK SAE %d -> %d (k=%d) on %d tokens in %d steps: FVU %.4f, %.1f%% dead latents",
             d_in, d_sae, k, n, steps, final_fvu, 100 * dead)
    return sae, report


def _auxk_loss(pre, error, W_dec, dead, k_aux):
    """Dead latents reconstruct the main reconstruction's residual (Gao et al. 2024, "AuxK")."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return error.new_zeros(())
    values, indices = pre.masked_fill(~dead, 0.0).topk(min(k_aux, n_dead), dim=-1, sorted=False)
    error_hat = _decode(values, indices, W_dec, 0.0)
    target = error.detach()
    return (error_hat - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)


def _remove_parallel_gradient(W_dec: torch.Tensor) -> None:
    """Project out the part of each decoder row's gradient along the row: the norm stays 1."""
    if W_dec.grad is None:
        return
    with torch.no_grad():
        parallel = (W_dec.grad * W_dec).sum(dim=1, keepdim=True)
        W_dec.grad -= parallel * W_dec


def _evaluate(sae, x_all: torch.Tensor) -> tuple[float, float]:
    """FVU over all tokens and the fraction of latents that never fire on them."""
    stats = SAEStats(sae.d_sae, sae.d_in)
    stats.update(sae, x_all)
    summary = stats.summary()
    never_fired = sum(1 for f in summary["feature_frequency"] if f == 0)
    return summary["fvu"], never_fired / sae.d_sae


def main(argv=None) -> int:
    """``python -m sae.train``: train on harvested activation shards (see ``sae.train_cli``)."""
    from .train_cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
