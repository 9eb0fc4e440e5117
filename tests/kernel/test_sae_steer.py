"""``SparseAutoencoder.steer`` and the scan helpers against a dense reference of the issue's semantics."""
import itertools

import pytest
import torch

from comfyui_sae_steering.sae import Edit, SparseAutoencoder

D_IN, D_SAE, K = 12, 48, 6
ARCHS = [("topk", None), ("relu", None), ("jumprelu", None), ("topk", "layer_norm"), ("relu", "layer_norm")]


def make(arch, normalize=None, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    t = {"W_enc": torch.randn(D_SAE, D_IN, generator=g) * 0.4, "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
         "W_dec": torch.randn(D_SAE, D_IN, generator=g) * 0.4, "b_dec": torch.randn(D_IN, generator=g) * 0.3,
         "b_pre": torch.randn(D_IN, generator=g) * 0.3, "threshold": torch.rand(D_SAE, generator=g) * 0.4}
    t["b_enc"][-1] = -100.0  # a dead feature, active on no token
    t = {name: v.to(dtype) for name, v in t.items()}
    sae = SparseAutoencoder(t["W_enc"], t["b_enc"], t["W_dec"], t["b_dec"], arch=arch, k=K, b_pre=t["b_pre"],
                            threshold=t["threshold"], normalize=normalize)
    return sae, {name: v.double() for name, v in t.items()}


def ref_encode(p, arch, normalize, x):
    """Dense canonical maths in float64: LN, centre, encoder, activation."""
    x = x.double()
    if normalize:
        mu = x.mean(-1, keepdim=True)
        x = (x - mu) / ((x - mu).std(-1, keepdim=True) + 1e-5)
    pre = (x - p["b_pre"]) @ p["W_enc"].T + p["b_enc"]
    if arch == "topk":
        values, indices = pre.topk(K, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
    if arch == "jumprelu":
        return torch.relu(pre) * (pre > p["threshold"])
    return torch.relu(pre)


def ref_decode(p, normalize, z, x):
    out = z @ p["W_dec"] + p["b_dec"]
    if normalize:
        x = x.double()
        mu = x.mean(-1, keepdim=True)
        out = out * (x - mu).std(-1, keepdim=True) + mu
    return out


def ref_edit(z, edits):
    """The issue's semantics: add: +value; set: value − z_f; scale: (value − 1)·z_f; in order; only_active
    restricts an edit to tokens where the encoder found the feature (z_f > 0), where=g to tokens where
    it found feature g (z_g > 0)."""
    edited = z.clone()
    for e in edits:
        f = e.feature
        new = {"add": edited[..., f] + e.value, "set": torch.full_like(edited[..., f], e.value),
               "scale": edited[..., f] * e.value}[e.op]
        gate = e.where if e.where is not None else (f if e.only_active else None)
        edited[..., f] = torch.where(z[..., gate] > 0, new, edited[..., f]) if gate is not None else new
    return edited


def x_for(seed=1, shape=(2, 7)):
    return torch.randn(*shape, D_IN, generator=torch.Generator().manual_seed(seed))


def active_feature(z):
    """A feature active on some tokens and inactive on others, so that only_active matters."""
    counts = (z > 0).reshape(-1, D_SAE).sum(0)
    n = z.reshape(-1, D_SAE).shape[0]
    return int(torch.nonzero((counts > 0) & (counts < n))[0])


@pytest.mark.parametrize("arch,normalize", ARCHS)
@pytest.mark.parametrize("op,only_active", list(itertools.product(["add", "set", "scale"], [False, True])))
def test_steer_matches_decode_of_edit_plus_error(arch, normalize, op, only_active):
    sae, p = make(arch, normalize)
    x = x_for()
    z = ref_encode(p, arch, normalize, x)
    f = active_feature(z)
    edits = [Edit(f, op, 2.5, only_active), Edit((f + 7) % D_SAE, op, -0.75, only_active)]
    edited = ref_edit(z, edits)
    want = ref_decode(p, normalize, edited, x) + x.double() - ref_decode(p, normalize, z, x)
    got = sae.steer(x, edits)
    assert got.dtype == x.dtype and got.shape == x.shape
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    replaced = sae.steer(x, edits, keep_error=False)
    torch.testing.assert_close(replaced.double(), ref_decode(p, normalize, edited, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch,normalize", ARCHS)
def test_where_gates_an_edit_by_another_feature(arch, normalize):
    """Move g into f: where g is active, g is removed and f raised; tokens without g keep f's change at
    zero (the gate is g, not f), so those tokens come back bit for bit."""
    sae, p = make(arch, normalize)
    x = x_for()
    z = ref_encode(p, arch, normalize, x)
    g = active_feature(z)
    f = (g + 7) % D_SAE
    edits = [Edit(g, "set", 0.0, where=g), Edit(f, "add", 1.75, where=g)]
    edited = ref_edit(z, edits)
    assert torch.equal(edited[..., f] != z[..., f], z[..., g] > 0)  # f changes exactly where g is found
    want = ref_decode(p, normalize, edited, x) + x.double() - ref_decode(p, normalize, z, x)
    got = sae.steer(x, edits)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    untouched = z[..., g] <= 0
    assert torch.equal(got[untouched], x[untouched])


def test_where_must_be_a_feature_of_the_sae():
    sae, _ = make("topk")
    with pytest.raises(ValueError, match="Edit where 48 is out of range"):
        sae.steer(x_for(), [Edit(1, "add", 1.0, where=D_SAE)])
    with pytest.raises(ValueError, match="where must be a non-negative"):
        Edit(1, "add", 1.0, where=-2)


@pytest.mark.parametrize("arch,normalize", ARCHS)
def test_edits_apply_in_order_on_one_feature(arch, normalize):
    sae, p = make(arch, normalize)
    x = x_for()
    z = ref_encode(p, arch, normalize, x)
    f = active_feature(z)
    edits = [Edit(f, "set", 3.0), Edit(f, "scale", 0.5), Edit(f, "add", 1.0, only_active=True)]
    want = ref_decode(p, normalize, ref_edit(z, edits), x) + x.double() - ref_decode(p, normalize, z, x)
    torch.testing.assert_close(sae.steer(x, edits).double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("arch,normalize", ARCHS)
def test_no_edit_and_zero_change_are_bit_identical(arch, normalize, dtype):
    sae, p = make(arch, normalize)
    x = x_for().to(dtype)
    keep = x.clone()
    z = ref_encode(p, arch, normalize, x)
    never = D_SAE - 1  # the dead feature
    assert not (z[..., never] > 0).any()
    zero_change = [Edit(3, "add", 0.0), Edit(5, "scale", 1.0), Edit(never, "set", 9.0, only_active=True),
                   Edit(never, "add", 4.0, only_active=True), Edit(never, "scale", 7.0)]
    for edits in ([], zero_change):
        y = sae.steer(x, edits)
        assert torch.equal(y, x) and y.dtype == dtype
        assert y.data_ptr() != x.data_ptr()  # a new tensor: callers may write into it
    assert torch.equal(x, keep)  # input never mutated


@pytest.mark.parametrize("arch,normalize", ARCHS)
def test_chunked_equals_unchunked(arch, normalize):
    sae, _ = make(arch, normalize)
    x = x_for(shape=(3, 11))
    edits = [Edit(2, "set", 1.5, True), Edit(9, "add", -0.5), Edit(2, "scale", 2.0)]
    sae.chunk_tokens = None
    whole = (sae.steer(x, edits), sae.steer(x, edits, keep_error=False), sae.encode(x), sae.encode_sparse(x),
             sae.feature_values(x, [2, 9]), sae.reconstruct(x), sae.steer(x, [Edit(4, "add", 1.0)]))
    sae.chunk_tokens = 4
    chunked = (sae.steer(x, edits), sae.steer(x, edits, keep_error=False), sae.encode(x), sae.encode_sparse(x),
               sae.feature_values(x, [2, 9]), sae.reconstruct(x), sae.steer(x, [Edit(4, "add", 1.0)]))
    for a, b in zip(whole, chunked):
        if isinstance(a, tuple):  # encode_sparse: same features per token, in any order
            dense = [torch.zeros(*x.shape[:-1], D_SAE, dtype=v.dtype).scatter_add(-1, i, v) for v, i in (a, b)]
            torch.testing.assert_close(dense[0], dense[1], rtol=1e-6, atol=1e-6)
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("arch,normalize", ARCHS)
def test_half_precision_inputs_use_fp32_maths_and_stay_finite(arch, normalize, dtype):
    sae, _ = make(arch, normalize)
    x = (x_for() * 1e3).to(dtype)  # fp16 would overflow in a half-precision encoder
    edits = [Edit(1, "set", 40.0), Edit(7, "add", 5.0, only_active=True), Edit(11, "scale", 3.0)]
    y = sae.steer(x, edits)
    assert y.dtype == dtype and torch.isfinite(y).all()
    torch.testing.assert_close(y, sae.steer(x.float(), edits).to(dtype), rtol=0, atol=0)
    assert torch.isfinite(sae.steer(x, edits, keep_error=False)).all()
    assert sae.encode(x).dtype == torch.float32


def test_half_precision_weights_compute_in_fp32():
    sae16, _ = make("topk", dtype=torch.bfloat16)
    sae32 = SparseAutoencoder(*(t.float() for t in (sae16.W_enc, sae16.b_enc, sae16.W_dec, sae16.b_dec)),
                              arch="topk", k=K, b_pre=sae16.b_pre.float())
    x = x_for()
    edits = [Edit(4, "set", 2.0)]
    assert sae16.W_enc.dtype == torch.bfloat16  # not silently upcast in place
    torch.testing.assert_close(sae16.steer(x, edits), sae32.steer(x, edits), rtol=0, atol=0)


@pytest.mark.parametrize("arch,normalize", ARCHS)
def test_plain_add_reads_no_encoder(arch, normalize):
    sae, p = make(arch, normalize)
    x = x_for()
    want = sae.steer(x, [Edit(4, "add", 1.5)])
    sae.W_enc = torch.full_like(sae.W_enc, float("nan"))  # any encoder read would poison the result
    got = sae.steer(x, [Edit(4, "add", 1.5)])
    assert torch.equal(got, want)
    if normalize is None:
        assert torch.equal(got, x + 1.5 * sae.W_dec[4])


@pytest.mark.parametrize("arch", ["relu", "jumprelu"])
def test_relu_membership_reads_only_the_edited_rows(arch):
    sae, p = make(arch)
    x = x_for()
    edits = [Edit(4, "set", 2.0), Edit(9, "add", 1.0, only_active=True)]
    want = sae.steer(x, edits)
    poisoned = torch.full_like(sae.W_enc, float("nan"))
    poisoned[[4, 9]] = sae.W_enc[[4, 9]]
    sae.W_enc = poisoned
    assert torch.equal(sae.steer(x, edits), want)
    torch.testing.assert_close(sae.feature_values(x, [9, 4]).double(),
                               ref_encode(p, arch, None, x)[..., [9, 4]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch,normalize", ARCHS)
def test_encode_sparse_feature_values_reconstruct(arch, normalize):
    sae, p = make(arch, normalize)
    x = x_for()
    z = ref_encode(p, arch, normalize, x)
    values, indices = sae.encode_sparse(x)
    m = K if arch == "topk" else int((z > 0).sum(-1).max())
    assert values.shape == indices.shape == (2, 7, m)
    dense = torch.zeros(2, 7, D_SAE, dtype=torch.float64).scatter_add(-1, indices, values.double())
    torch.testing.assert_close(dense, z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae.feature_values(x, [5, 0, 5]).double(), z[..., [5, 0, 5]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae.reconstruct(x).double(), ref_decode(p, normalize, z, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae.encode(x).double(), z, rtol=1e-5, atol=1e-5)


def test_shapes_properties_and_to():
    sae, _ = make("topk")
    assert (sae.d_in, sae.d_sae, sae.k, sae.arch, sae.hook, sae.source) == (D_IN, D_SAE, K, "topk", None, None)
    assert make("relu")[0].k is None
    x = x_for()[0, 0]  # a single vector [d_in]
    assert sae.steer(x, [Edit(1, "add", 1.0)]).shape == (D_IN,)
    assert sae.encode(x).shape == (D_SAE,)
    assert sae.to("cpu") is sae and sae.to(torch.float16) is sae and sae.W_enc.dtype == torch.float32


def test_repeated_plain_add_follows_new_weights_dtypes_and_checks():
    sae, _ = make("topk")
    x = x_for()
    edits = [Edit(4, "add", 1.5), Edit(9, "add", -0.5)]
    for _ in range(2):  # the second call reuses the add vector
        assert torch.equal(sae.steer(x, edits), x + (1.5 * sae.W_dec[4] - 0.5 * sae.W_dec[9]))
    sae.W_dec = sae.W_dec * 2  # new weights: a new vector
    assert torch.equal(sae.steer(x, edits), x + (1.5 * sae.W_dec[4] - 0.5 * sae.W_dec[9]))
    assert sae.steer(x.half(), edits).dtype == torch.float16
    with pytest.raises(ValueError, match="d_in"):
        sae.steer(x[..., :5], edits)
    with pytest.raises(ValueError, match="features"):
        sae.steer(x, [Edit(4, "add", 1.5), Edit(D_SAE, "add", 1.0)])


@pytest.mark.parametrize("arch,normalize", ARCHS)
def test_add_feature_deltas_is_decode_of_edited_plus_error(arch, normalize):
    """For a Δz computed beforehand (concept erasure per image): decode(z + Δz) + x − decode(z), chunked or not;
    an all-zero Δz gives x bit for bit; a Δz of another shape is refused, naming both shapes."""
    sae, p = make(arch, normalize)
    x = x_for(shape=(3, 11))
    features = [2, 9, 30]
    dz = torch.randn(3, 11, len(features), generator=torch.Generator().manual_seed(4))
    z = ref_encode(p, arch, normalize, x)
    edited = z.clone()
    edited[..., features] += dz.double()
    want = ref_decode(p, normalize, edited, x) + x.double() - ref_decode(p, normalize, z, x)
    for chunk in (None, 4):
        sae.chunk_tokens = chunk
        torch.testing.assert_close(sae.add_feature_deltas(x, features, dz).double(), want, rtol=1e-5, atol=1e-5)
    keep = x.clone()
    assert torch.equal(sae.add_feature_deltas(x, features, torch.zeros_like(dz)), x) and torch.equal(x, keep)
    with pytest.raises(ValueError, match=r"feature deltas have shape \(3, 11, 2\).* must be \(3, 11, 3\)"):
        sae.add_feature_deltas(x, features, dz[..., :2])
