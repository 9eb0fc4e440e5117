"""Every public layout, written on disk in its real form, loads and encodes/decodes like its published maths."""
import pytest
import torch

from comfyui_sae_steering.sae import load_sae
import sae_layouts
from sae_layouts import ALL, D_IN, D_SAE, activations


@pytest.mark.parametrize("layout", sorted(ALL))
def test_encode_decode_match_the_published_maths(tmp_path, layout):
    ref = ALL[layout](tmp_path)
    sae = load_sae(ref.path)
    assert (sae.d_in, sae.d_sae, sae.arch, sae.k) == (D_IN, D_SAE, ref.arch, ref.k)
    assert sae.hook == ref.hook
    x = activations()
    z = sae.encode(x)
    assert z.shape == (2, 5, D_SAE)
    torch.testing.assert_close(z, ref.encode(x), rtol=1e-5, atol=1e-5)
    assert (z > 0).sum() > 0  # the reference is not trivially zero
    torch.testing.assert_close(sae.decode(z, x=x), ref.decode(ref.encode(x), x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae.reconstruct(x), ref.decode(ref.encode(x), x), rtol=1e-5, atol=1e-5)


def test_weights_keep_the_file_dtype_and_are_memory_mapped(tmp_path):
    ref = sae_layouts.finebooru(tmp_path)
    from safetensors.torch import load_file, save_file
    weights = ref.path / "model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(weights)).items()}, str(weights))
    sae = load_sae(ref.path)
    assert sae.W_enc.dtype == torch.bfloat16 and sae.W_dec.dtype == torch.bfloat16
    # a view into one map of the whole file, not a copy of the tensor
    assert sae.W_enc.untyped_storage().nbytes() == weights.stat().st_size
    assert load_sae(ref.path, dtype="fp32").W_enc.dtype == torch.float32
    assert load_sae(ref.path, dtype=torch.float16).W_dec.dtype == torch.float16


def test_k_override_and_supply(tmp_path):
    ref = sae_layouts.finebooru(tmp_path, with_k_in_config=False)
    with pytest.raises(ValueError, match="k"):
        load_sae(ref.path)
    sae = load_sae(ref.path, k=4)
    assert sae.k == 4
    x = activations()
    torch.testing.assert_close(sae.encode(x), sae_layouts.topk_relu(ref.encode(x) * 0 + _pre_finebooru(ref, x), 4))


def _pre_finebooru(ref, x):
    from safetensors.torch import load_file
    t = load_file(str(ref.path / "model.safetensors"))
    return (x - t["bias"]) @ t["encoder.weight"].T + t["encoder.bias"]


def test_single_weights_file_with_stem_json_sidecar(tmp_path):
    ref = sae_layouts.finebooru(tmp_path)
    lone = tmp_path / "lone"
    lone.mkdir()
    (ref.path / "model.safetensors").rename(lone / "flux_single_9.safetensors")
    (ref.path / "config.json").rename(lone / "flux_single_9.json")
    sae = load_sae(lone / "flux_single_9.safetensors")
    x = activations()
    torch.testing.assert_close(sae.encode(x), ref.encode(x), rtol=1e-5, atol=1e-5)
    assert load_sae(lone).k == sae_layouts.K  # the folder's only weights file


def test_sparsify_hook_comes_from_its_folder_only(tmp_path):
    ref = sae_layouts.sparsify(tmp_path)
    assert load_sae(ref.path).hook == "layers.6"
    (ref.path / "sae.safetensors").rename(ref.path / "pythia_l6.safetensors")
    assert load_sae(ref.path / "pythia_l6.safetensors").hook is None  # cfg.json beside it, no hookpoint folder


def test_folder_of_a_single_pth(tmp_path):
    ref = sae_layouts.gytis(tmp_path)
    assert load_sae(tmp_path).arch == "relu"
    assert load_sae(ref.path).source.startswith("gytis:")


def test_loading_writes_nothing(tmp_path):
    refs = [ALL[name](tmp_path / name) for name in sorted(ALL)]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()}
    for ref in refs:
        load_sae(ref.path).encode(activations())
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after
