"""Matmul FLOPs of one FLUX forward and of one SAE encode, counted from the config.

Every matmul costs 2·m·n·k. Norms, RoPE, gates, softmax and the top-k are elementwise or linear in
the size and left out: at FLUX width they are well under 1% of the matmuls. The count follows
ComfyUI v0.8.0's ``comfy/ldm/flux`` (FLUX.1 layout: plain GELU MLP, per-block modulation).
"""
from __future__ import annotations

TIMESTEP_DIM = 256  # timestep_embedding(t, 256) feeds time_in and guidance_in


def _linear(rows: int, d_in: int, d_out: int) -> int:
    return 2 * rows * d_in * d_out


def flux_forward_flops(config: dict, img_tokens: int, txt_tokens: int, batch: int = 1) -> dict[str, int]:
    """FLOPs of one forward, split into ``double`` (all double blocks), ``single``, ``outer``
    (embedders and the last layer) and ``total``; ``per_double``/``per_single`` are one block each."""
    d = config["hidden_size"]
    mlp = int(d * config["mlp_ratio"])
    seq = img_tokens + txt_tokens
    attention = 2 * 2 * batch * seq * seq * d  # Q·Kᵀ and P·V over the joint sequence, all heads together
    # a double block runs each stream through its own qkv, proj and MLP, then attends jointly
    per_token_double = _linear(batch * seq, d, 3 * d) + _linear(batch * seq, d, d) \
        + _linear(batch * seq, d, mlp) + _linear(batch * seq, mlp, d)
    per_double = per_token_double + attention + 2 * _linear(batch, d, 6 * d)  # + img/txt modulation
    # a single block: linear1 gives qkv and the MLP input, linear2 takes cat(attention, MLP)
    per_single = _linear(batch * seq, d, 3 * d + mlp) + _linear(batch * seq, d + mlp, d) \
        + attention + _linear(batch, d, 3 * d)
    patch = config["patch_size"] ** 2
    outer = _linear(batch * img_tokens, config["in_channels"] * patch, d) \
        + _linear(batch * txt_tokens, config["context_in_dim"], d) \
        + _linear(batch, TIMESTEP_DIM, d) + _linear(batch, d, d) \
        + _linear(batch * img_tokens, d, config["out_channels"] * patch) + _linear(batch, d, 2 * d)
    if config.get("guidance_embed"):
        outer += _linear(batch, TIMESTEP_DIM, d) + _linear(batch, d, d)
    if config.get("vec_in_dim"):
        outer += _linear(batch, config["vec_in_dim"], d) + _linear(batch, d, d)
    double = config["depth"] * per_double
    single = config["depth_single_blocks"] * per_single
    return {"per_double": per_double, "per_single": per_single, "double": double, "single": single,
            "outer": outer, "total": double + single + outer}


def sae_encode_flops(tokens: int, d_in: int, d_sae: int) -> int:
    """The encoder matmul, the floor of every mode that must know which features are active."""
    return _linear(tokens, d_in, d_sae)
