"""Tiny random SAEs written in each public format's real on-disk layout, each with a small dense
reference of that format's published maths (written here, independent of ``sae/``)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

D_IN, D_SAE, K = 16, 64, 8


@dataclass
class Layout:
    name: str
    path: Path                                   # what load_sae is given
    encode: Callable[[torch.Tensor], torch.Tensor]               # x -> dense z
    decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z, x) -> x_hat (x for de-normalising)
    arch: str
    k: int | None
    hook: str | None = None


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _rand(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g) * scale


def topk_relu(pre, k):
    """TopK(ReLU(pre)): keep the k largest after ReLU, zero elsewhere."""
    post = torch.relu(pre)
    values, indices = post.topk(k, dim=-1)
    return torch.zeros_like(post).scatter(-1, indices, values)


def relu_topk(pre, k):
    """OpenAI / SAELens order: top-k of the pre-activations, then ReLU on the kept values."""
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def layer_norm(x, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    xc = x - mu
    std = xc.std(-1, keepdim=True)
    return xc / (std + eps), mu, std


def finebooru(tmp: Path, seed=0, k=K, with_k_in_config=True) -> Layout:
    g = _g(seed)
    enc_w, enc_b = _rand(g, D_SAE, D_IN, scale=0.3), _rand(g, D_SAE, scale=0.1)
    dec_w, bias = _rand(g, D_IN, D_SAE, scale=0.3), _rand(g, D_IN, scale=0.5)
    folder = tmp / "krea-flux-sae"
    folder.mkdir(parents=True)
    save_file({"encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w, "bias": bias},
              str(folder / "model.safetensors"))
    config = {"features": D_IN, "pages": D_SAE, "sample": None}
    if with_k_in_config:
        config["k"] = k
    (folder / "config.json").write_text(json.dumps(config))
    return Layout("finebooru", folder,
                  lambda x: topk_relu((x - bias) @ enc_w.T + enc_b, k),
                  lambda z, x: z @ dec_w.T + bias, "topk", k)


def sparsify(tmp: Path, seed=1, k=K) -> Layout:
    g = _g(seed)
    enc_w, enc_b = _rand(g, D_SAE, D_IN, scale=0.3), _rand(g, D_SAE, scale=0.1)
    W_dec, b_dec = _rand(g, D_SAE, D_IN, scale=0.3), _rand(g, D_IN, scale=0.5)
    folder = tmp / "layers.6"
    folder.mkdir(parents=True)
    save_file({"encoder.weight": enc_w, "encoder.bias": enc_b, "W_dec": W_dec, "b_dec": b_dec},
              str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"activation": "topk", "expansion_factor": D_SAE // D_IN,
                                                 "normalize_decoder": True, "num_latents": 0, "k": k,
                                                 "multi_topk": False, "skip_connection": False,
                                                 "transcode": False, "d_in": D_IN}))
    return Layout("sparsify", folder,
                  lambda x: topk_relu((x - b_dec) @ enc_w.T + enc_b, k),
                  lambda z, x: z @ W_dec + b_dec, "topk", k, hook="layers.6")


def saelens(tmp: Path, arch="standard", apply_b_dec=True, normalize="none", old_config=False, seed=2) -> Layout:
    """v6 config, or (``old_config``) a pre-6 config with activation_fn_str / hook_point."""
    g = _g(seed)
    W_enc, b_enc = _rand(g, D_IN, D_SAE, scale=0.3), _rand(g, D_SAE, scale=0.1)
    W_dec, b_dec = _rand(g, D_SAE, D_IN, scale=0.3), _rand(g, D_IN, scale=0.5)
    threshold = torch.rand(D_SAE, generator=g) * 0.3
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if arch == "jumprelu":
        tensors["threshold"] = threshold
    hook = "blocks.3.hook_resid_post"
    if old_config:
        cfg = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "hook_point": hook,
               "activation_fn_str": "topk" if arch == "topk" else "relu",
               "activation_fn_kwargs": {"k": K} if arch == "topk" else {},
               "apply_b_dec_to_input": apply_b_dec, "normalize_activations": False,  # the old boolean form
               "sae_lens_training_version": "3.13.0", "dtype": "float32"}
    else:
        cfg = {"architecture": arch, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu",
               "apply_b_dec_to_input": apply_b_dec, "normalize_activations": normalize,
               "reshape_activations": "none", "metadata": {"hook_name": hook, "sae_lens_version": "6.5.1"}}
        if arch == "topk":
            cfg["k"] = K
    folder = tmp / f"saelens-{arch}"
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))

    def encode(x):
        if normalize == "layer_norm":
            x, _, _ = layer_norm(x)
        pre = (x - b_dec * apply_b_dec) @ W_enc + b_enc
        if arch == "topk":
            return relu_topk(pre, K)
        if arch == "jumprelu":
            return torch.relu(pre) * (pre > threshold)
        return torch.relu(pre)

    def decode(z, x):
        out = z @ W_dec + b_dec
        if normalize == "layer_norm":
            _, mu, std = layer_norm(x)
            out = out * std + mu
        return out

    return Layout("saelens", folder, encode, decode, "relu" if arch == "standard" else arch,
                  K if arch == "topk" else None, hook=hook)


def openai(tmp: Path, activation="TopK", tied=False, seed=3) -> Layout:
    g = _g(seed)
    pre_bias, enc_w = _rand(g, D_IN, scale=0.5), _rand(g, D_SAE, D_IN, scale=0.3)
    latent_bias, dec_w = _rand(g, D_SAE, scale=0.1), _rand(g, D_IN, D_SAE, scale=0.3)
    sd = {"pre_bias": pre_bias, "encoder.weight": enc_w, "latent_bias": latent_bias,
          "stats_last_nonzero": torch.zeros(D_SAE, dtype=torch.long),
          "latents_activation_frequency": torch.ones(D_SAE), "latents_mean_square": torch.zeros(D_SAE),
          "activation": activation}
    if tied:
        sd["decoder.linear.weight"] = enc_w  # shares storage with encoder.weight, as nn.Module state dicts do
        dec_w = enc_w.T
    else:
        sd["decoder.weight"] = dec_w
    if activation == "TopK":
        sd["activation_state_dict"] = {"k": K, "postact_fn": "ReLU"}
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "v5_32k_layer_8.pt"
    torch.save(sd, path)
    normalize = activation == "TopK"  # OpenAI's loader: normalisation exactly for TopK

    def encode(x):
        if normalize:
            x, _, _ = layer_norm(x)
        pre = (x - pre_bias) @ enc_w.T + latent_bias
        return relu_topk(pre, K) if activation == "TopK" else torch.relu(pre)

    def decode(z, x):
        out = z @ dec_w.T + pre_bias
        if normalize:
            _, mu, std = layer_norm(x)
            out = out * std + mu
        return out

    return Layout("openai", path, encode, decode, "topk" if activation == "TopK" else "relu",
                  K if activation == "TopK" else None)


def gytis(tmp: Path, seed=4) -> Layout:
    g = _g(seed)
    enc_w, enc_bias = _rand(g, D_SAE, D_IN, scale=0.3), _rand(g, D_SAE, scale=0.1)
    dec_w, dec_bias = _rand(g, D_IN, D_SAE, scale=0.3), _rand(g, D_IN, scale=0.5)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "clip-sae-128.pth"
    torch.save({"encoder.weight": enc_w, "enc_bias": enc_bias, "decoder.weight": dec_w, "dec_bias": dec_bias}, path)
    return Layout("gytis", path, lambda x: torch.relu(x @ enc_w.T + enc_bias),
                  lambda z, x: z @ dec_w.T + dec_bias, "relu", None)


def unbox(tmp: Path, seed=6, k=K, block="unet.mid_block.attentions.0", with_means=True) -> Layout:
    """sdxl-unbox: a run folder named after the block, the SAE in its final/ (as the release ships it)."""
    g = _g(seed)
    pre_bias, enc_w = _rand(g, D_IN, scale=0.5), _rand(g, D_SAE, D_IN, scale=0.3)
    latent_bias, dec_w = _rand(g, D_SAE, scale=0.1), _rand(g, D_IN, D_SAE, scale=0.3)
    folder = tmp / f"{block}_k{k}_hidden{D_SAE}_auxk256_bs4096_lr0.0001" / "final"
    folder.mkdir(parents=True)
    state = {"encoder.weight": enc_w, "decoder.weight": dec_w, "pre_bias": pre_bias, "latent_bias": latent_bias,
             "stats_last_nonzero": torch.zeros(D_SAE, dtype=torch.long)}
    torch.save({"state_dict": state}, folder / "state_dict.pth")
    (folder / "config.json").write_text(json.dumps({"n_dirs_local": D_SAE, "d_model": D_IN, "k": k, "auxk": 256,
                                                    "dead_steps_threshold": 2441}))
    if with_means:
        torch.save(torch.rand(D_SAE, generator=g) + 0.5, folder / "mean.pt")
        torch.save(torch.rand(D_SAE, generator=g), folder / "std.pt")
    return Layout("sdxl-unbox", folder.parent,
                  lambda x: relu_topk((x - pre_bias) @ enc_w.T + latent_bias, k),
                  lambda z, x: z @ dec_w.T + pre_bias, "topk", k, hook=block + ".update")


ALL = {
    "finebooru": finebooru,
    "sparsify": sparsify,
    "saelens-standard": lambda tmp: saelens(tmp, "standard"),
    "saelens-topk": lambda tmp: saelens(tmp, "topk"),
    "saelens-jumprelu": lambda tmp: saelens(tmp, "jumprelu", apply_b_dec=False),
    "saelens-layer-norm": lambda tmp: saelens(tmp, "topk", normalize="layer_norm"),
    "saelens-old-topk": lambda tmp: saelens(tmp, "topk", old_config=True),
    "saelens-old-relu-no-centring": lambda tmp: saelens(tmp, "standard", apply_b_dec=False, old_config=True),
    "openai-topk": openai,
    "openai-relu": lambda tmp: openai(tmp, "ReLU"),
    "openai-tied": lambda tmp: openai(tmp, "TopK", tied=True),
    "gytis": gytis,
    "sdxl-unbox": unbox,
}


def activations(seed=5, shape=(2, 5), scale=1.0):
    return torch.randn(*shape, D_IN, generator=_g(seed)) * scale
