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

import torch
import torch.nn.functional as F

from .deltas import EditPlan, feature_deltas, plan_edits

ARCHS = ("topk", "relu", "jumprelu")
NORMALIZATIONS = (None, "layer_norm")
LAYER_NORM_EPS = 1e-5  # OpenAI's and SAELens's LN(x, eps=1e-5): x_n = (x − μ) / (σ + eps)
# Tokens per chunk are chosen so that a [chunk, d_sae] fp32 temporary stays near this many elements.
CHUNK_ELEMENTS = 1 << 22


class SparseAutoencoder:
    """A sparse autoencoder in canonical form (see the module docstring).

    W_enc [d_sae, d_in] (row f encodes feature f), b_enc [d_sae], W_dec [d_sae, d_in] (row f = d_f,
    the direction feature f writes), b_dec [d_in], b_pre [d_in] or None, threshold [d_sae] (jumprelu).
    Weights keep their dtype; ``chunk_tokens`` (settable) bounds the working set of every method.
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
        self.chunk_tokens = max(16, CHUNK_ELEMENTS // d_sae)

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

    def _chunks(self, n: int):
        step = max(1, int(self.chunk_tokens))
        for start in range(0, n, step):
            yield start, min(n, start + step)

    def _normalise(self, xc: torch.Tensor):
        """x (maths dtype) -> (centred encoder input, σ or None, μ or None)."""
        mu = std = None
        if self.normalize == "layer_norm":
            mu = xc.mean(dim=-1, keepdim=True)
            xc = xc - mu
            std = xc.std(dim=-1, keepdim=True)
            xc = xc / (std + LAYER_NORM_EPS)
        if self.b_pre is not None:
            xc = xc - self._w(self.b_pre)
        return xc, std, mu

    def _activate(self, pre: torch.Tensor, threshold=None) -> torch.Tensor:
        """ReLU / JumpReLU on pre-activations (TopK is handled where the top-k is taken)."""
        if self.arch == "jumprelu":
            return torch.where(pre > threshold, pre.clamp_min(0), torch.zeros_like(pre))
        return pre.clamp_min(0)

    def _topk(self, pre: torch.Tensor):
        """(values, indices) of the k largest pre-activations, values through ReLU (OpenAI/SAELens order;
        the same z as TopK(ReLU(pre)))."""
        values, indices = pre.topk(self.k, dim=-1, sorted=False)
        return values.clamp_min(0), indices

    def _dense(self, values, indices, n):
        return torch.zeros(n, self.d_sae, dtype=values.dtype, device=values.device).scatter_(-1, indices, values)

    def _feature_z(self, xn: torch.Tensor, features: torch.Tensor, W_enc, b_enc, enc_rows, thr_rows):
        """z for ``features`` on a chunk: TopK needs the full pre-activation (membership); ReLU and
        JumpReLU need only the chosen features' encoder rows."""
        if self.arch == "topk":
            values, indices = self._topk(torch.addmm(b_enc, xn, W_enc.T))
            hit = indices.unsqueeze(-1) == features  # [n, k, m]
            return (values.unsqueeze(-1) * hit).sum(dim=1)
        return self._activate(torch.addmm(b_enc[features], xn, enc_rows.T), thr_rows)

    # ---- public maths ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense features z [..., d_sae] in the maths dtype (fp32 for fp16/bf16/fp32 weights), chunked."""
        flat = self._flat(x)
        W_enc, b_enc, thr = self._w(self.W_enc), self._w(self.b_enc), self._w(self.threshold)
        out = torch.empty(flat.shape[0], self.d_sae, dtype=self._math_dtype, device=flat.device)
        for s, e in self._chunks(flat.shape[0]):
            xn, _, _ = self._normalise(flat[s:e].to(self._math_dtype))
            pre = torch.addmm(b_enc, xn, W_enc.T)
            out[s:e] = self._dense(*self._topk(pre), e - s) if self.arch == "topk" else self._activate(pre, thr)
        return out.reshape(*x.shape[:-1], self.d_sae)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, *, x: torch.Tensor | None = None) -> torch.Tensor:
        """x_hat [..., d_in] from dense z [..., d_sae] (maths dtype). For layer-norm SAEs pass the input
        ``x`` whose μ and σ de-normalise the output; without it the output stays normalised."""
        if z.shape[-1] != self.d_sae:
            raise ValueError(f"decode input has shape {tuple(z.shape)}: its last dimension must be d_sae={self.d_sae}")
        zf = z.reshape(-1, self.d_sae).to(self._math_dtype)
        out = torch.addmm(self._w(self.b_dec), zf, self._w(self.W_dec))
        return self._denormalise(out, x).reshape(*z.shape[:-1], self.d_in)

    @torch.no_grad()
    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor, *, x: torch.Tensor | None = None):
        """x_hat [..., d_in] from ``encode_sparse``'s (values, indices), without a dense z; ``x`` as in ``decode``."""
        m = values.shape[-1]
        lead = values.shape[:-1]
        W_dec, b_dec = self._w(self.W_dec), self._w(self.b_dec)
        if m == 0:  # nothing active anywhere (ReLU/JumpReLU)
            out = b_dec.expand(int(torch.tensor(lead).prod()), self.d_in).clone()
        else:
            out = F.embedding_bag(indices.reshape(-1, m), W_dec, mode="sum",
                                  per_sample_weights=values.reshape(-1, m).to(self._math_dtype)) + b_dec
        return self._denormalise(out, x).reshape(*lead, self.d_in)

    def _denormalise(self, out: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        """Layer-norm SAEs: undo the input's per-token normalisation (μ, σ of ``x``) on a decoded output."""
        if self.normalize != "layer_norm" or x is None:
            return out
        xf = self._flat(x).to(self._math_dtype)
        mu = xf.mean(dim=-1, keepdim=True)
        return out * (xf - mu).std(dim=-1, keepdim=True) + mu

    @torch.no_grad()
    def encode_sparse(self, x: torch.Tensor):
        """Active features per token as (values [..., m], indices [..., m]), chunked.

        TopK: m = k (the top-k, values after ReLU, so a value may be 0). ReLU/JumpReLU: m = the largest
        number of active features on any token, shorter rows padded with value 0 (index 0). Values are
        in the maths dtype, indices int64; never more than a [chunk, d_sae] temporary at once.
        """
        flat = self._flat(x)
        W_enc, b_enc, thr = self._w(self.W_enc), self._w(self.b_enc), self._w(self.threshold)
        parts = []
        for s, e in self._chunks(flat.shape[0]):
            xn, _, _ = self._normalise(flat[s:e].to(self._math_dtype))
            pre = torch.addmm(b_enc, xn, W_enc.T)
            if self.arch == "topk":
                parts.append(self._topk(pre))
            else:
                z = self._activate(pre, thr)
                m = int((z > 0).sum(dim=-1).max()) if z.numel() else 0
                parts.append(z.topk(m, dim=-1))
        if self.arch == "topk":
            m = self.k
        else:
            m = max((p[0].shape[-1] for p in parts), default=0)
        values = torch.zeros(flat.shape[0], m, dtype=self._math_dtype, device=flat.device)
        indices = torch.zeros(flat.shape[0], m, dtype=torch.long, device=flat.device)
        start = 0
        for v, i in parts:
            values[start:start + v.shape[0], :v.shape[1]] = v
            indices[start:start + v.shape[0], :v.shape[1]] = i
            start += v.shape[0]
        lead = x.shape[:-1]
        return values.reshape(*lead, m), indices.reshape(*lead, m)

    @torch.no_grad()
    def feature_values(self, x: torch.Tensor, features) -> torch.Tensor:
        """Exact z_f [..., len(features)] for the chosen features (0 where inactive or outside the top-k).

        ReLU/JumpReLU read only those features' encoder rows; TopK needs the full encoder (membership).
        """
        plan = plan_edits(_as_edits(features), self.d_sae)
        flat = self._flat(x)
        idx = torch.tensor([int(f) for f in features], dtype=torch.long, device=flat.device)
        out = torch.empty(flat.shape[0], len(idx), dtype=self._math_dtype, device=flat.device)
        del plan
        args = self._feature_args(idx)
        for s, e in self._chunks(flat.shape[0]):
            xn, _, _ = self._normalise(flat[s:e].to(self._math_dtype))
            out[s:e] = self._feature_z(xn, idx, *args)
        return out.reshape(*x.shape[:-1], len(idx))

    def _feature_args(self, idx):
        if self.arch == "topk":
            return self._w(self.W_enc), self._w(self.b_enc), None, None
        thr = self._w(self.threshold)
        return (None, self._w(self.b_enc), self._w(self.W_enc[idx]), None if thr is None else thr[idx])

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)) chunked, de-normalised, in x's dtype; TopK decodes sparsely."""
        flat = self._flat(x)
        out = torch.empty_like(flat)
        for s, e in self._chunks(flat.shape[0]):
            xm = flat[s:e].to(self._math_dtype)
            out[s:e] = self._reconstruct_chunk(xm, None).to(x.dtype)
        return out.reshape(x.shape)

    def _reconstruct_chunk(self, xm, extra):
        """decode(encode(xm) + extra) for one chunk; ``extra`` = (Δz [n, m], decoder rows [m, d_in]) or None."""
        xn, std, mu = self._normalise(xm)
        W_enc, b_enc = self._w(self.W_enc), self._w(self.b_enc)
        W_dec, b_dec = self._w(self.W_dec), self._w(self.b_dec)
        pre = torch.addmm(b_enc, xn, W_enc.T)
        if self.arch == "topk":
            values, indices = self._topk(pre)
            out = F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum") + b_dec
        else:
            out = torch.addmm(b_dec, self._activate(pre, self._w(self.threshold)), W_dec)
        if extra is not None:
            out = out + extra[0] @ extra[1]
        if std is not None:
            out = out * std + mu
        return out

    @torch.no_grad()
    def steer(self, x: torch.Tensor, edits, keep_error: bool = True) -> torch.Tensor:
        """Apply ``edits`` (list of ``Edit``) to x's features; the result has x's shape, dtype and device.

        keep_error=True: y = x + Σ_f Δz_f · d_f (· σ for layer-norm SAEs) = decode(z′) + x − decode(z),
        where only the edited features' decoder rows are used and plain ``add`` needs no encode; with no
        edits or an all-zero Δz, y equals x bit for bit. keep_error=False: y = decode(z + Δz).
        Work goes in token chunks: a [chunk, d_sae] temporary is the largest ever made.
        """
        flat = self._flat(x)
        plan = plan_edits(edits, self.d_sae)
        if keep_error and not plan.edits:
            return x.clone()
        out = torch.empty_like(flat)
        idx = torch.tensor(plan.features, dtype=torch.long, device=flat.device)
        dec_rows = self._w(self.W_dec[idx])
        if keep_error and not plan.needs_encode:
            self._steer_add(flat, plan, dec_rows, out)
            return out.reshape(x.shape)
        args = self._feature_args(idx)
        for s, e in self._chunks(flat.shape[0]):
            xm = flat[s:e].to(self._math_dtype)
            if keep_error:
                xn, std, _ = self._normalise(xm)
                delta = feature_deltas(plan, self._feature_z(xn, idx, *args)) @ dec_rows
                if std is not None:
                    delta = delta * std
                out[s:e] = (xm + delta).to(x.dtype)
            else:
                xn, _, _ = self._normalise(xm)
                dz = feature_deltas(plan, self._feature_z(xn, idx, *args)) if plan.needs_encode else None
                if dz is None:
                    dz = feature_deltas(plan, torch.zeros(e - s, len(idx), dtype=xm.dtype, device=xm.device))
                out[s:e] = self._reconstruct_chunk(xm, (dz, dec_rows)).to(x.dtype)
        return out.reshape(x.shape)

    def _steer_add(self, flat, plan: EditPlan, dec_rows, out):
        """Plain ``add`` on every token: one vector v = Σ value·d_f, no encode (σ-scaled per token for LN)."""
        dz = feature_deltas(plan, torch.zeros(1, len(plan.features), dtype=dec_rows.dtype, device=dec_rows.device))
        v = dz @ dec_rows  # [1, d_in]
        if self.normalize != "layer_norm" and flat.dtype == v.dtype:
            torch.add(flat, v, out=out)
            return
        for s, e in self._chunks(flat.shape[0]):
            xm = flat[s:e].to(self._math_dtype)
            delta = v
            if self.normalize == "layer_norm":
                delta = v * (xm - xm.mean(dim=-1, keepdim=True)).std(dim=-1, keepdim=True)
            out[s:e] = (xm + delta).to(flat.dtype)


def _as_edits(features):
    from .edit import Edit
    return [Edit(feature=int(f), op="add", value=0.0) for f in features]
