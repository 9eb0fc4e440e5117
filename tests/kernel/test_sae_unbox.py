"""sdxl-unbox folders: the published maths in float64, the block hook with its update marker, the
feature means of mean.pt, and errors that name the file."""
import pytest
import torch

from comfyui_sae_steering.sae import load_sae
import sae_layouts
from sae_layouts import D_IN, D_SAE, K, activations


def test_encode_decode_in_float64_against_the_published_maths(tmp_path):
    ref = sae_layouts.unbox(tmp_path)
    sae = load_sae(ref.path, dtype="fp64")
    x = activations(shape=(3, 7)).double()
    raw = torch.load(ref.path / "final" / "state_dict.pth", weights_only=True)["state_dict"]
    enc, dec = raw["encoder.weight"].double(), raw["decoder.weight"].double()
    pre_bias, latent_bias = raw["pre_bias"].double(), raw["latent_bias"].double()
    # SAE/sae.py: latents = relu(topk(encoder(x - pre_bias) + latent_bias)); recons = decoder(latents) + pre_bias
    pre = (x - pre_bias) @ enc.T + latent_bias
    vals, inds = pre.topk(K, dim=-1)
    z_ref = torch.zeros_like(pre).scatter(-1, inds, torch.relu(vals))
    z = sae.encode(x)
    assert z.dtype == torch.float64 and (z > 0).sum() > 0
    torch.testing.assert_close(z, z_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sae.decode(z), z_ref @ dec.T + pre_bias, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sae.reconstruct(x), z_ref @ dec.T + pre_bias, rtol=1e-12, atol=1e-12)


def test_folder_run_folder_and_weights_file_load_alike(tmp_path):
    ref = sae_layouts.unbox(tmp_path)
    x = activations()
    expected = ref.encode(x)
    for path in (ref.path, ref.path / "final", ref.path / "final" / "state_dict.pth"):
        sae = load_sae(path)
        assert (sae.d_in, sae.d_sae, sae.arch, sae.k) == (D_IN, D_SAE, "topk", K)
        assert sae.hook == "unet.mid_block.attentions.0.update"
        torch.testing.assert_close(sae.encode(x), expected, rtol=1e-5, atol=1e-5)


def test_feature_means_come_from_mean_pt(tmp_path):
    ref = sae_layouts.unbox(tmp_path)
    means = torch.load(ref.path / "final" / "mean.pt", weights_only=True)
    sae = load_sae(ref.path)
    assert sae.feature_means.dtype == torch.float32
    assert torch.equal(sae.feature_means, means)
    assert load_sae(sae_layouts.unbox(tmp_path / "b", with_means=False).path).feature_means is None
    assert load_sae(sae_layouts.finebooru(tmp_path / "c").path).feature_means is None


def test_flux_block_folder_names_its_update_hook(tmp_path):
    ref = sae_layouts.unbox(tmp_path, block="transformer.transformer_blocks.18")
    assert load_sae(ref.path).hook == "transformer.transformer_blocks.18.update"


def test_openai_files_are_not_taken_for_sdxl_unbox(tmp_path):
    assert load_sae(sae_layouts.openai(tmp_path).path).source.startswith("openai:")
    assert load_sae(sae_layouts.unbox(tmp_path / "u").path).source.startswith("sdxl-unbox:")


@pytest.mark.parametrize("content,message", [
    ({"means": torch.zeros(D_SAE)}, "mean.pt: expected a float tensor of 64 feature means, got dict"),
    (torch.zeros(D_SAE + 1), r"mean.pt: expected a float tensor of 64 feature means, got shape \(65,\)"),
])
def test_bad_mean_file_is_named(tmp_path, content, message):
    ref = sae_layouts.unbox(tmp_path)
    torch.save(content, ref.path / "final" / "mean.pt")
    with pytest.raises(ValueError, match=message):
        load_sae(ref.path)


def test_bad_files_are_named(tmp_path):
    ref = sae_layouts.unbox(tmp_path)
    weights = ref.path / "final" / "state_dict.pth"
    config = ref.path / "final" / "config.json"
    config.write_text('{"n_dirs_local": 99, "d_model": 16, "k": 8}')
    with pytest.raises(ValueError, match=f"config.json says n_dirs_local=99 but the tensors have {D_SAE}"):
        load_sae(ref.path)
    config.write_text('{"n_dirs_local": 64, "d_model": 16}')
    with pytest.raises(ValueError, match="attentions.0_k8.*sdxl-unbox layout.*needs k"):
        load_sae(ref.path)
    assert load_sae(ref.path, k=4).k == 4
    state = torch.load(weights, weights_only=True)
    state["state_dict"]["decoder.weight"] = torch.zeros(D_SAE, D_IN)
    torch.save(state, weights)
    with pytest.raises(ValueError, match=rf"state_dict.pth: tensor 'decoder.weight' has shape \({D_SAE}, {D_IN}\)"):
        load_sae(ref.path)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="state_dict.pth: cannot be read"):
        load_sae(ref.path)


def test_converted_single_file_keeps_the_feature_means(tmp_path):
    """python -m sae.convert of an sdxl-unbox folder: the means travel in the file (fp32 even at bf16);
    a file without them loads without them."""
    from comfyui_sae_steering.sae.convert import convert

    ref = sae_layouts.unbox(tmp_path)
    means = torch.load(ref.path / "final" / "mean.pt", weights_only=True)
    convert(ref.path, tmp_path / "unbox.safetensors", dtype="bf16")
    again = load_sae(tmp_path / "unbox.safetensors")
    assert again.W_enc.dtype == torch.bfloat16 and again.feature_means.dtype == torch.float32
    assert torch.equal(again.feature_means, means.float())
    convert(sae_layouts.unbox(tmp_path / "b", with_means=False).path, tmp_path / "plain.safetensors")
    assert load_sae(tmp_path / "plain.safetensors").feature_means is None
