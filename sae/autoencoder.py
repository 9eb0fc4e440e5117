"""The one SAE class every format loads into: encode, decode and exact, memory-bounded steering.

Canonical form (every reader converts to it):
    x_n   = layer_norm(x) if normalize == "layer_norm" else x       (OpenAI: mean μ, std σ per token)
    pre   = (x_n − b_pre) @ W_enc.T + b_enc                          b_pre may be None (no centring)
    z     = TopK(ReLU(pre)) | ReLU(pre) | ReLU(pre)·[pre > threshold]
    x_hat = (z @ W_dec + b_dec) · σ + μ                              (σ = 1, μ = 0 without layer norm)

Every decode is linear in z, so an edit Δz changes the output by (Δz @ W_dec)·σ and nothing
else: ``steer`` adds only that, computed from the edited features' decoder rows.
The maths runs in fp32 (fp64 for fp64 weights) whatever the input's dtype; results are cast back.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .deltas import EditPlan, feature_deltas, plan_edits

ARCHS = ("topk", "relu", "jumprelu")
NORMALIZATIONS = (None, "layer_norm")
LAYER_NORM_EPS = 1e-5  # OpenAI's and SAELens's LN(x, eps=1e-5): x_n = (x − μ) / (σ + eps)
_NO_CONTEXT = contextlib.nullcontext()  # reusable: steer's hot path skips no_grad when grad is already off
# Tokens per chunk are chosen so that a [chunk, d_sae] temporary stays near this many elements
# (64 MB / 128 MB of fp32): each chunk streams the whole encoder once, so chunks much smaller than
# this make the encoder matmul measurably slower than one unchunked matmul (20 % at 256 tokens).
CHUNK_ELEMENTS = {"cpu": 1 << 24, "other": 1 << 25}


class SparseAutoencoder:
    """A sparse autoencoder in canonical form (see the module docstring).

    W_enc [d_sae, d_in] (row f encodes feature f), b_enc [d_sae], W_dec [d_sae, d_in] (row f = d_f,
    the direction feature f writes), b_dec [d_in], b_pre [d_in] or None, threshold [d_sae] (jumprelu).
    Weights keep their dtype (fp16/bf16 weights are cast to fp32 per call, never stored twice); they
    are treated as read-only once built (assign new tensors rather than writing into them).
    ``chunk_tokens`` (tokens per chunk: automatic from d_sae and the device until set; setting None
    restores the automatic value) bounds the working set of every method.
    """

    def __init__(self, W_enc, b_enc, W_dec, b_dec, *, arch="topk", k=None, b_pre=None, threshold=None,
                 normalize=None, hook=None, source=None):
        if arch not in ARCHS:
            raise ValueError(f"SAE architecture {arch!r} is not one of {', '.join(ARCHS)}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"SAE input normalisation {normalize!r} is not supported (known: none, layer_norm)")
        if W_enc.dim() != 2:
            raise ValueError(f"W_enc must be [d_sae, d_in], got shape {tuple(W_enc.shape)}")
        d_sae, d_in = W_enc.shape
        expected = {"b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
        given = {"b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
        if b_pre is not None:
            expected["b_pre"], given["b_pre"] = (d_in,), b_pre
        if arch == "jumprelu":
            if threshold is None:
                raise ValueError("a jumprelu SAE needs a threshold [d_sae]")
            expected["threshold"], given["threshold"] = (d_sae,), threshold
        for name, shape in expected.items():
            if tuple(given[name].shape) != shape:
                raise ValueError(f"SAE {name} has shape {tuple(given[name].shape)}, expected {shape} "
                                 f"for W_enc {tuple(W_enc.shape)} (d_sae={d_sae}, d_in={d_in})")
        if arch == "topk":
            if k is None:
                raise ValueError("a topk SAE needs k (pass k=...)")
            if isinstance(k, bool) or int(k) != k or not 0 < int(k) <= d_sae:
                raise ValueError(f"k={k} is out of range for an SAE with {d_sae} features (need 1 <= k <= {d_sae})")
            k = int(k)
        else:
            k = None
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = W_enc, b_enc, W_dec, b_dec
        self.b_pre = b_pre
        self.threshold = threshold if arch == "jumprelu" else None
        self.normalize = normalize
        self._arch, self._k = arch, k
        self._hook, self._source = hook, source
        self.labels: dict[int, str] = {}  # feature index -> name, from a labels file beside the SAE (sae/labels.py)
        self.feature_means = None  # [d_sae] float32 mean activation per feature, where a release ships it (sdxl-unbox)
        self._chunk_tokens = None
        self._add_cache = None  # (edits, the W_dec it was made from, plain-add vector [1, d_in])

    # ---- description -------------------------------------------------------------------------
    d_in = property(lambda self: self.W_enc.shape[1], doc="width of the activations the SAE reads")
    d_sae = property(lambda self: self.W_enc.shape[0], doc="number of features")
    k = property(lambda self: self._k, doc="features kept per token (TopK), None otherwise")
    arch = property(lambda self: self._arch, doc='"topk" | "relu" | "jumprelu"')
    hook = property(lambda self: self._hook, doc="activation site the SAE was trained on, or None")
    source = property(lambda self: self._source, doc="where the weights came from (format and path)")
    device = property(lambda self: self.W_enc.device)
    dtype = property(lambda self: self.W_enc.dtype, doc="dtype of the stored weights")

    def __repr__(self):
        k = f", k={self.k}" if self.k else ""
        return (f"SparseAutoencoder(d_in={self.d_in}, d_sae={self.d_sae}, arch={self.arch!r}{k}, "
                f"dtype={self.dtype}, hook={self.hook!r})")

    def tensors(self) -> dict[str, torch.Tensor]:
        """The canonical tensors by name (those that are set), as the pack's own file stores them."""
        named = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec,
                 "b_pre": self.b_pre, "threshold": self.threshold}
        return {name: t for name, t in named.items() if t is not None}

    def to(self, device):
        """Move every tensor to ``device`` in place and return self. A dtype is ignored on purpose:
        ComfyUI casts patches to the model's dtype (possibly fp8), which an SAE must not follow."""
        if isinstance(device, torch.dtype):
            return self
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "b_pre", "threshold"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    # ---- internals ---------------------------------------------------------------------------
    @property
    def _math_dtype(self):
        return torch.float64 if self.W_enc.dtype == torch.float64 else torch.float32

    def _w(self, t):
        return None if t is None else t.to(self._math_dtype)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"SAE input must be a tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.d_in:
            raise ValueError(f"SAE input has shape {tuple(x.shape)}: its last dimension must be d_in={self.d_in}")
        if x.device != self.device:
            raise ValueError(f"SAE input is on {x.device} but the SAE is on {self.device}: call sae.to(device)")
        return x.reshape(-1, self.d_in)

    @property
    def chunk_tokens(self) -> int:
        """Tokens per chunk, so that a [chunk, d_sae] temporary is the largest any method makes."""
        if self._chunk_tokens is not None:
            return self._chunk_tokens
        return max(16, CHUNK_ELEMENTS["cpu" if self.device.type == "cpu" else "other"] // self.d_sae)

    @chunk_tokens.setter
    def chunk_tokens(self, value):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ValueError(f"chunk_tokens must be a positive integer or None, got {value!r}")
        self._chunk_tokens = None if value is None else int(value)

    def _chunks(self, n: int):
        step = self.chunk_tokens
        for start in range(0, n, step):
            yield start, min(n, start + step)

    def _normalise(self, xm: torch.Tensor):
        """x (maths dtype) -> (encoder input, σ or None, μ or None): layer norm, then minus b_pre."""
        mu = std = None
        if self.normalize == "layer_norm":
            mu = xm.mean(dim=-1, keepdim=True)
            xm = xm - mu
            std = xm.std(dim=-1, keepdim=True)
            xm = xm / (std + LAYER_NORM_EPS)
        if self.b_pre is not None:
            xm = xm - self._w(self.b_pre)
        return xm, std, mu

    def _activate(self, pre: torch.Tensor, threshold=None) -> torch.Tensor:
        """ReLU / JumpReLU on pre-activations (TopK is handled by ``_topk``)."""
        if self.arch == "jumprelu":
            return torch.where(pre > threshold, pre.clamp_min(0), torch.zeros_like(pre))
        return pre.clamp_min(0)

    def _topk(self, pre: torch.Tensor):
        """(values, indices) of the k largest pre-activations, values through ReLU: the same z as
        TopK(ReLU(pre)) (finebooru, sparsify) and as ReLU(TopK(pre)) (OpenAI, SAELens)."""
        values, indices = pre.topk(self.k, dim=-1, sorted=False)
        return values.clamp_min(0), indices

    def _encode_chunk(self, xn: torch.Tensor, W):
        """Full encoder on a chunk: (values, indices) for TopK, dense z otherwise. ``W`` = _Weights."""
        pre = torch.addmm(W.b_enc, xn, W.W_enc.T)
        return self._topk(pre) if self.arch == "topk" else self._activate(pre, W.threshold)

    def _pick(self, code, idx):
        """z for features ``idx`` [m] out of a chunk's code (sparse TopK pair or dense z)."""
        if self.arch == "topk":
            values, indices = code
            return (values.unsqueeze(-1) * (indices.unsqueeze(-1) == idx)).sum(dim=1)
        return code[:, idx]

    def _feature_z(self, xn: torch.Tensor, idx, W, rows):
        """z for features ``idx`` on a chunk. TopK needs the full encoder (membership); ReLU and JumpReLU
        read only those features' encoder rows (``rows`` = _Rows)."""
        if self.arch == "topk":
            return self._pick(self._encode_chunk(xn, W), idx)
        return self._activate(torch.addmm(rows.b_enc, xn, rows.W_enc.T), rows.threshold)

    def _decode_code(self, code, W):
        """Decoder output (before de-normalisation) of a chunk's code; TopK decodes from its k rows."""
        if self.arch == "topk":
            return self._decode_pairs(*code, W)
        return torch.addmm(W.b_dec, code, W.W_dec)

    def _decode_pairs(self, values, indices, W):
        """Decoder output from sparse (values, indices) [n, m], reading only the listed decoder rows."""
        if values.shape[-1] == 0:  # nothing active anywhere (ReLU/JumpReLU)
            return W.b_dec.expand(values.shape[0], self.d_in).clone()
        if W.W_dec.is_contiguous():
            return F.embedding_bag(indices, W.W_dec, per_sample_weights=values, mode="sum") + W.b_dec
        return torch.addmm(W.b_dec, self._dense(values, indices, values.shape[0]), W.W_dec)

    def _dense(self, values, indices, n):
        return torch.zeros(n, self.d_sae, dtype=values.dtype, device=values.device).scatter_(-1, indices, values)

    def _weights(self, decoder=True):
        """All weights in the maths dtype (a no-op for fp32 weights); ``decoder=False`` skips casting
        the decoder where only membership is needed."""
        W_dec, b_dec = (self._w(self.W_dec), self._w(self.b_dec)) if decoder else (None, None)
        return _Weights(self._w(self.W_enc), self._w(self.b_enc), W_dec, b_dec, self._w(self.threshold))

    def _rows(self, idx):
        """The chosen features' encoder and decoder rows (a few KB), in the maths dtype."""
        thr = None if self.threshold is None else self._w(self.threshold[idx])
        W_enc = None if self.arch == "topk" else self._w(self.W_enc[idx])
        return _Rows(W_enc, self._w(self.b_enc[idx]), self._w(self.W_dec[idx]), thr)

    def _features(self, features) -> torch.Tensor:
        features = [int(f) for f in features]
        for f in features:
            if not 0 <= f < self.d_sae:
                raise ValueError(f"feature {f} is out of range for this SAE, which has {self.d_sae} features "
                                 f"(valid: 0..{self.d_sae - 1})")
        return torch.tensor(features, dtype=torch.long, device=self.device)

    # ---- public maths ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense features z [..., d_sae] in the maths dtype (fp32 unless the weights are fp64), chunked."""
        flat = self._flat(x)
        W = self._weights(decoder=False)
        out = torch.empty(flat.shape[0], self.d_sae, dtype=self._math_dtype, device=flat.device)
        for s, e in self._chunks(flat.shape[0]):
            code = self._encode_chunk(self._normalise(flat[s:e].to(self._math_dtype))[0], W)
            out[s:e] = self._dense(*code, e - s) if self.arch == "topk" else code
        return out.reshape(*x.shape[:-1], self.d_sae)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, *, x: torch.Tensor | None = None) -> torch.Tensor:
        """x_hat [..., d_in] (maths dtype) from dense z [..., d_sae]. Layer-norm SAEs (OpenAI) de-normalise
        with the μ and σ of the input ``x`` the features came from; without ``x`` their output stays in
        the normalised space."""
        if not isinstance(z, torch.Tensor) or z.dim() == 0 or z.shape[-1] != self.d_sae:
            raise ValueError(f"decode input has shape {tuple(getattr(z, 'shape', ()))}: its last dimension "
                             f"must be d_sae={self.d_sae}")
        zf = z.reshape(-1, self.d_sae).to(self._math_dtype)
        out = torch.addmm(self._w(self.b_dec), zf, self._w(self.W_dec))
        return self._denormalise(out, x).reshape(*z.shape[:-1], self.d_in)

    @torch.no_grad()
    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor, *, x: torch.Tensor | None = None):
        """x_hat [..., d_in] from ``encode_sparse``'s (values, indices), without a dense z; ``x`` as in ``decode``."""
        m = values.shape[-1]
        W = _Weights(None, None, self._w(self.W_dec), self._w(self.b_dec), None)  # the encoder is not needed
        out = self._decode_pairs(values.reshape(-1, m).to(self._math_dtype), indices.reshape(-1, m), W)
        return self._denormalise(out, x).reshape(*values.shape[:-1], self.d_in)

    def _denormalise(self, out: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        """Layer-norm SAEs: undo the input's per-token normalisation (μ, σ of ``x``) on a decoded output."""
        if self.normalize != "layer_norm" or x is None:
            return out
        _, std, mu = self._normalise(self._flat(x).to(self._math_dtype))
        return out * std + mu

    @torch.no_grad()
    def encode_sparse(self, x: torch.Tensor):
        """Active features per token as (values [..., m], indices [..., m]), chunked.

        TopK: m = k, the top-k entries (values after ReLU, so a kept value may be 0). ReLU/JumpReLU:
        m = the largest number of active features on any token; each row lists its active features first,
        then padding entries of value 0 (whose index names some inactive feature). Values are in the maths
        dtype, indices int64; a [chunk, d_sae] temporary is the largest ever made.
        """
        flat = self._flat(x)
        W = self._weights(decoder=False)
        parts = []
        for s, e in self._chunks(flat.shape[0]):
            code = self._encode_chunk(self._normalise(flat[s:e].to(self._math_dtype))[0], W)
            if self.arch != "topk":
                width = int((code > 0).sum(dim=-1).max()) if code.numel() else 0
                code = tuple(code.topk(width, dim=-1))
            parts.append(code)
        m = self.k if self.arch == "topk" else max((v.shape[-1] for v, _ in parts), default=0)
        values = torch.zeros(flat.shape[0], m, dtype=self._math_dtype, device=flat.device)
        indices = torch.zeros(flat.shape[0], m, dtype=torch.long, device=flat.device)
        start = 0
        for v, i in parts:
            values[start:start + v.shape[0], :v.shape[1]] = v
            indices[start:start + v.shape[0], :v.shape[1]] = i
            start += v.shape[0]
        return values.reshape(*x.shape[:-1], m), indices.reshape(*x.shape[:-1], m)

    @torch.no_grad()
    def feature_values(self, x: torch.Tensor, features) -> torch.Tensor:
        """Exact z_f [..., len(features)] (maths dtype) for the chosen features: 0 where a feature is
        inactive (or, for TopK, outside the top-k). ReLU/JumpReLU read only those features' encoder rows;
        TopK needs the full encoder for membership. Chunked."""
        flat = self._flat(x)
        idx = self._features(features)
        W, rows = (self._weights(decoder=False) if self.arch == "topk" else None), self._rows(idx)
        out = torch.empty(flat.shape[0], len(idx), dtype=self._math_dtype, device=flat.device)
        for s, e in self._chunks(flat.shape[0]):
            out[s:e] = self._feature_z(self._normalise(flat[s:e].to(self._math_dtype))[0], idx, W, rows)
        return out.reshape(*x.shape[:-1], len(idx))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)), de-normalised, in x's dtype; chunked, TopK decoded from its k rows."""
        return self._reconstruct(x, None)

    def _reconstruct(self, x, plan):
        """decode(z + Δz) per chunk, Δz from ``plan`` (or none)."""
        flat = self._flat(x)
        W = self._weights()
        idx = self._features(plan.features) if plan else None
        dec_rows = self._w(self.W_dec[idx]) if plan else None
        out = torch.empty_like(flat)
        for s, e in self._chunks(flat.shape[0]):
            xn, std, mu = self._normalise(flat[s:e].to(self._math_dtype))
            code = self._encode_chunk(xn, W)
            y = self._decode_code(code, W)
            if plan:
                y = y + feature_deltas(plan, self._pick(code, idx)) @ dec_rows
            if std is not None:
                y = y * std + mu
            out[s:e] = y.to(x.dtype)
        return out.reshape(x.shape)

    def steer(self, x: torch.Tensor, edits, keep_error: bool = True) -> torch.Tensor:
        """Apply ``edits`` (a list of ``Edit``) to x's features; the result has x's shape, dtype and device.

        keep_error=True: y = x + Σ_f Δz_f · d_f (· σ per token for layer-norm SAEs) = decode(z′) + x − decode(z),
        computed from the edited features' decoder rows only; plain ``add`` needs no encode, ReLU/JumpReLU
        membership reads only the edited features' encoder rows. No edits, or an all-zero Δz, give x bit
        for bit (in a new tensor). keep_error=False: y = decode(z + Δz), the reconstruction replaces x.
        Token chunks keep the working set bounded: [chunk, d_sae] is the largest temporary.
        """
        with torch.no_grad() if torch.is_grad_enabled() else _NO_CONTEXT:
            edits = tuple(edits)
            if keep_error:
                v = self._cached_add_vector(edits, x)
                if v is not None:  # every sampling step repeats the same plain add: one addition
                    return x + v
            return self._steer(x, edits, keep_error)

    def _steer(self, x, edits, keep_error):
        flat = self._flat(x)
        plan = plan_edits(edits, self.d_sae)
        if not keep_error:
            return self._reconstruct(x, plan if plan.edits else None)
        if not plan.edits:
            return x.clone()
        if not plan.needs_encode:
            return self._steer_add(flat, plan).reshape(x.shape)
        return self.steer_by_rule(x, plan.features, lambda z: feature_deltas(plan, z))

    @torch.no_grad()
    def steer_by_rule(self, x: torch.Tensor, features, rule) -> torch.Tensor:
        """x + Σ_f Δz_f · d_f (· σ per token for layer-norm SAEs), the error kept, with Δz = ``rule(z)``: ``z``
        [n, len(features)] holds the encoder's exact z_f per token (maths dtype, one token chunk at a time),
        ``rule`` returns Δz of the same shape. What ``steer`` does for its edits, for any per-token rule
        (concept erasure's "push above a threshold" is one)."""
        flat = self._flat(x)
        idx = self._features(features)
        rows = self._rows(idx)
        W = self._weights(decoder=False) if self.arch == "topk" else None
        out = torch.empty_like(flat)
        for s, e in self._chunks(flat.shape[0]):
            xm = flat[s:e].to(self._math_dtype)
            xn, std, _ = self._normalise(xm)
            out[s:e] = _plus_decoded(xm, rule(self._feature_z(xn, idx, W, rows)), rows.W_dec, std).to(x.dtype)
        return out.reshape(x.shape)

    @torch.no_grad()
    def add_feature_deltas(self, x: torch.Tensor, features, dz: torch.Tensor) -> torch.Tensor:
        """x + Σ_f Δz_f · d_f (· σ per token for layer-norm SAEs), the error kept, for a Δz [..., len(features)]
        computed beforehand: what ``steer_by_rule`` does for a rule that reads more than one token's z (an
        image's mean over its tokens), computed from ``feature_values``. An all-zero Δz gives x bit for bit."""
        flat = self._flat(x)
        idx = self._features(features)
        if tuple(dz.shape) != (*x.shape[:-1], len(idx)):
            raise ValueError(f"feature deltas have shape {tuple(dz.shape)}; for activations {tuple(x.shape)} and "
                             f"{len(idx)} features they must be {(*x.shape[:-1], len(idx))}")
        dz, rows = dz.reshape(flat.shape[0], len(idx)), self._rows(idx)
        out = torch.empty_like(flat)
        for s, e in self._chunks(flat.shape[0]):
            xm = flat[s:e].to(self._math_dtype)
            std = self._normalise(xm)[1] if self.normalize == "layer_norm" else None
            out[s:e] = _plus_decoded(xm, dz[s:e].to(self._math_dtype), rows.W_dec, std).to(x.dtype)
        return out.reshape(x.shape)

    def _cached_add_vector(self, edits, x):
        """The plain-add vector of the last call, when these are the same (already checked) edits and x
        can take it directly (fp32 maths dtype, no layer norm, right width and device)."""
        cache = self._add_cache
        if cache is None or cache[1] is not self.W_dec or self.normalize is not None or cache[0] != edits:
            return None
        v = cache[2]
        if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[-1] == self.d_in and x.dtype == v.dtype \
                and x.device == v.device:
            return v[0]
        return None

    def _steer_add(self, flat, plan: EditPlan):
        """Plain ``add`` on every token: x + v with v = Σ value·d_f, no encode (σ-scaled per token for
        layer-norm SAEs, whose σ needs no encoder either). v is kept for the next call with the same
        edits, as every sampling step repeats them."""
        dec_rows = self._w(self.W_dec[self._features(plan.features)])
        zero = torch.zeros(1, len(plan.features), dtype=dec_rows.dtype, device=dec_rows.device)
        v = feature_deltas(plan, zero) @ dec_rows  # [1, d_in]
        self._add_cache = (plan.edits, self.W_dec, v)
        if self.normalize is None and flat.dtype == v.dtype:
            return flat + v
        out = torch.empty_like(flat)
        for s, e in self._chunks(flat.shape[0]):
            xm = flat[s:e].to(self._math_dtype)
            delta = v if self.normalize is None else v * self._normalise(xm)[1]
            out[s:e] = (xm + delta).to(flat.dtype)
        return out


class _Weights(NamedTuple):
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor | None  # None where only membership is needed
    b_dec: torch.Tensor | None
    threshold: torch.Tensor | None


class _Rows(NamedTuple):
    W_enc: torch.Tensor | None  # None for TopK (membership needs the full encoder)
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    threshold: torch.Tensor | None


def _plus_decoded(xm: torch.Tensor, dz: torch.Tensor, dec_rows: torch.Tensor, std: torch.Tensor | None) -> torch.Tensor:
    """xm + Δz @ the features' decoder rows, times each token's σ for a layer-norm SAE (its decoder writes
    in the normalised space)."""
    delta = dz @ dec_rows
    return xm + (delta if std is None else delta * std)
