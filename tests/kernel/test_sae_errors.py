"""Bad input gets a clear ValueError / FileNotFoundError naming the file, the input or the sizes."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from comfyui_sae_steering.sae import Edit, SparseAutoencoder, load_sae
import sae_layouts
from sae_layouts import D_IN, D_SAE


def rewrite_json(path, **changes):
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_sae(tmp_path / "nowhere")


def test_folder_without_weights_lists_the_known_layouts(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileNotFoundError) as err:
        load_sae(tmp_path)
    for name in ("finebooru", "sparsify", "SAELens", "OpenAI", "Gytis", "pack"):
        assert name in str(err.value)


def test_folder_with_several_weights_files(tmp_path):
    sae_layouts.gytis(tmp_path)
    sae_layouts.openai(tmp_path)
    with pytest.raises(ValueError, match="clip-sae-128.pth.*v5_32k_layer_8.pt"):
        load_sae(tmp_path)


def test_unknown_layout_lists_the_known_ones(tmp_path):
    save_file({"foo": torch.zeros(3)}, str(tmp_path / "mystery.safetensors"))
    with pytest.raises(ValueError, match=r"mystery.safetensors: unknown SAE layout(.|\n)*sparsify"):
        load_sae(tmp_path / "mystery.safetensors")


@pytest.mark.parametrize("cut", [4, 100, -40])
def test_truncated_safetensors(tmp_path, cut):
    ref = sae_layouts.finebooru(tmp_path)
    weights = ref.path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_sae(ref.path)


def test_corrupt_safetensors_header(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}" + b"\0" * 64)
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_sae(path)


def test_truncated_torch_file(tmp_path):
    ref = sae_layouts.gytis(tmp_path)
    ref.path.write_bytes(ref.path.read_bytes()[:300])
    with pytest.raises(ValueError, match="clip-sae-128.pth"):
        load_sae(ref.path)


class Payload:
    """Unpickling this would run a command: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


def test_pickled_objects_are_never_run(tmp_path):
    global MARKER
    MARKER = tmp_path / "ran"
    torch.save({"encoder.weight": torch.zeros(4, 2), "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt.*weights-only"):
        load_sae(tmp_path / "evil.pt")
    assert not MARKER.exists()


def test_config_that_disagrees_with_the_tensors(tmp_path):
    ref = sae_layouts.finebooru(tmp_path / "a")
    rewrite_json(ref.path / "config.json", features=99)
    with pytest.raises(ValueError, match=f"features=99.*{D_IN}"):
        load_sae(ref.path)
    ref = sae_layouts.saelens(tmp_path / "b")
    rewrite_json(ref.path / "cfg.json", d_sae=7)
    with pytest.raises(ValueError, match=f"cfg.json says d_sae=7 but the tensors have {D_SAE}"):
        load_sae(ref.path)
    ref = sae_layouts.sparsify(tmp_path / "c")
    rewrite_json(ref.path / "cfg.json", num_latents=10)
    with pytest.raises(ValueError, match="num_latents=10"):
        load_sae(ref.path)


def test_tensor_shapes_that_disagree(tmp_path):
    ref = sae_layouts.finebooru(tmp_path)
    save_file({"encoder.weight": torch.zeros(D_SAE, D_IN), "encoder.bias": torch.zeros(D_SAE),
               "decoder.weight": torch.zeros(D_IN, D_SAE + 1), "bias": torch.zeros(D_IN)},
              str(ref.path / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"decoder.weight.*\({D_IN}, {D_SAE + 1}\).*\({D_IN}, {D_SAE}\)"):
        load_sae(ref.path)


@pytest.mark.parametrize("k", [0, -3, D_SAE + 1])
def test_bad_k(tmp_path, k):
    ref = sae_layouts.sparsify(tmp_path)
    with pytest.raises(ValueError, match=f"k={k}.*{D_SAE}"):
        load_sae(ref.path, k=k)
    rewrite_json(ref.path / "cfg.json", k=k)
    with pytest.raises(ValueError, match=f"k={k}.*{D_SAE}"):
        load_sae(ref.path)


def test_k_for_a_relu_sae(tmp_path):
    with pytest.raises(ValueError, match="k=4.*relu"):
        load_sae(sae_layouts.gytis(tmp_path).path, k=4)


@pytest.mark.parametrize("layout,changes,message", [
    ("saelens", {"normalize_activations": "expected_average_only_in"}, "normalize_activations"),
    ("saelens", {"normalize_activations": "constant_norm_rescale"}, "normalize_activations"),
    ("saelens", {"normalize_activations": True}, "normalize_activations"),
    ("saelens", {"architecture": "gated"}, "architecture 'gated'"),
    ("saelens", {"architecture": "standard", "activation_fn": "tanh-relu"}, "tanh-relu"),
    ("saelens", {"architecture": "topk", "k": 4, "rescale_acts_by_decoder_norm": True}, "rescale_acts_by_decoder_norm"),
    ("sparsify", {"transcode": True}, "transcode"),
    ("sparsify", {"activation": "groupmax"}, "groupmax"),
    ("sparsify", {"skip_connection": True}, "skip_connection"),
])
def test_variants_that_cannot_be_reproduced_are_refused(tmp_path, layout, changes, message):
    ref = getattr(sae_layouts, layout)(tmp_path)
    rewrite_json(ref.path / "cfg.json", **changes)
    with pytest.raises(ValueError, match=message):
        load_sae(ref.path)


def test_saelens_without_config_and_with_a_scaling_factor(tmp_path):
    ref = sae_layouts.saelens(tmp_path)
    (ref.path / "cfg.json").unlink()
    with pytest.raises(ValueError, match="cfg.json"):
        load_sae(ref.path)
    ref = sae_layouts.saelens(tmp_path / "scaled")
    from safetensors.torch import load_file
    tensors = load_file(str(ref.path / "sae_weights.safetensors"))
    save_file({**tensors, "scaling_factor": torch.full((D_SAE,), 2.0)}, str(ref.path / "sae_weights.safetensors"))
    rewrite_json(ref.path / "cfg.json", finetuning_scaling_factor=True)
    with pytest.raises(ValueError, match="scaling_factor"):
        load_sae(ref.path)


def test_openai_unknown_activation(tmp_path):
    ref = sae_layouts.openai(tmp_path, activation="Identity")
    with pytest.raises(ValueError, match="Identity"):
        load_sae(ref.path)


def test_pack_file_with_corrupt_metadata(tmp_path):
    from comfyui_sae_steering.sae.convert import convert
    convert(sae_layouts.gytis(tmp_path).path, tmp_path / "one.safetensors")
    from safetensors.torch import load_file
    tensors = load_file(str(tmp_path / "one.safetensors"))
    save_file(tensors, str(tmp_path / "two.safetensors"), metadata={"sae_steering": '{"version": 99}'})
    with pytest.raises(ValueError, match="two.safetensors.*version 99"):
        load_sae(tmp_path / "two.safetensors")


def test_unknown_dtype(tmp_path):
    with pytest.raises(ValueError, match="fp7"):
        load_sae(sae_layouts.gytis(tmp_path).path, dtype="fp7")


def small_sae(**kw):
    args = dict(arch="topk", k=4)
    args.update(kw)
    return SparseAutoencoder(torch.randn(D_SAE, D_IN), torch.randn(D_SAE), torch.randn(D_SAE, D_IN),
                             torch.randn(D_IN), **args)


def test_constructor_checks():
    with pytest.raises(ValueError, match=rf"W_dec.*\(3, {D_IN}\).*\({D_SAE}, {D_IN}\)"):
        SparseAutoencoder(torch.randn(D_SAE, D_IN), torch.randn(D_SAE), torch.randn(3, D_IN), torch.randn(D_IN), k=2)
    with pytest.raises(ValueError, match="b_pre"):
        small_sae(b_pre=torch.zeros(D_IN + 1))
    with pytest.raises(ValueError, match="architecture 'gated'"):
        small_sae(arch="gated")
    with pytest.raises(ValueError, match="threshold"):
        small_sae(arch="jumprelu")
    with pytest.raises(ValueError, match="normalisation"):
        small_sae(normalize="rms")
    with pytest.raises(ValueError, match="needs k"):
        small_sae(k=None)
    for k in (0, D_SAE + 1, 2.5):
        with pytest.raises(ValueError, match=f"k={k}.*{D_SAE}"):
            small_sae(k=k)


def test_bad_inputs_to_the_maths():
    sae = small_sae()
    x = torch.randn(2, 3, D_IN)
    wrong = torch.randn(2, 3, D_IN + 1)
    for call in (lambda: sae.steer(wrong, [Edit(1)]), lambda: sae.encode(wrong), lambda: sae.reconstruct(wrong),
                 lambda: sae.encode_sparse(wrong), lambda: sae.feature_values(wrong, [1])):
        with pytest.raises(ValueError, match=rf"\(2, 3, {D_IN + 1}\).*d_in={D_IN}"):
            call()
    with pytest.raises(ValueError, match=rf"decode.*d_sae={D_SAE}"):
        sae.decode(torch.randn(2, D_SAE - 1))
    for bad in (D_SAE, D_SAE + 5):
        with pytest.raises(ValueError, match=f"{bad}.*{D_SAE} features"):
            sae.steer(x, [Edit(bad, "set", 1.0)])
        with pytest.raises(ValueError, match=f"{bad}.*{D_SAE} features"):
            sae.feature_values(x, [0, bad])
    with pytest.raises(ValueError, match="not finite"):
        Edit(1, "add", float("nan"))
    with pytest.raises(ValueError, match="sae.Edit"):
        sae.steer(x, [(1, "add", 1.0)])
