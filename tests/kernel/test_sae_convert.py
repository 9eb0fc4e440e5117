"""The converter writes the pack's single file from every layout; loading it gives the same SAE."""
import subprocess
import sys

import pytest
import torch

from comfyui_sae_steering.sae import Edit, load_sae
from comfyui_sae_steering.sae.convert import convert, main
from sae_layouts import ALL, activations
from comfyui_sae_steering.harness.comfyui_locator import PACK_ROOT


@pytest.mark.parametrize("layout", sorted(ALL))
def test_round_trip_every_layout(tmp_path, layout):
    ref = ALL[layout](tmp_path)
    original = load_sae(ref.path)
    out = tmp_path / "converted.safetensors"
    convert(ref.path, out)
    again = load_sae(out)
    assert (again.d_in, again.d_sae, again.arch, again.k, again.hook, again.normalize) == \
        (original.d_in, original.d_sae, original.arch, original.k, original.hook, original.normalize)
    assert again.source.startswith("pack:") and again.W_enc.dtype == torch.float32
    x = activations()
    torch.testing.assert_close(again.encode(x), ref.encode(x), rtol=1e-5, atol=1e-5)
    edits = [Edit(3, "set", 2.0), Edit(5, "add", 1.0, only_active=True)]
    # same numbers; only the memory layout (transposed views vs contiguous rows) may change the rounding
    torch.testing.assert_close(again.steer(x, edits), original.steer(x, edits), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(again.reconstruct(x), original.reconstruct(x), rtol=1e-6, atol=1e-6)


def test_bf16_on_request_and_k_override(tmp_path):
    ref = ALL["sparsify"](tmp_path)
    out = tmp_path / "bf16.safetensors"
    assert main([str(ref.path), str(out), "--dtype", "bf16", "--k", "3"]) == 0
    sae = load_sae(out)
    assert sae.W_enc.dtype == sae.W_dec.dtype == torch.bfloat16 and sae.k == 3
    assert load_sae(out, dtype="fp32").W_enc.dtype == torch.float32


def test_cli_errors_name_the_problem(tmp_path, capsys):
    ref = ALL["gytis"](tmp_path)
    assert main([str(ref.path), str(tmp_path / "out.bin")]) == 2
    assert "out.bin must end in .safetensors" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), str(tmp_path / "out.safetensors")]) == 2
    assert "missing" in capsys.readouterr().err


def test_python_dash_m_from_the_pack_root(tmp_path):
    ref = ALL["openai-topk"](tmp_path)
    out = tmp_path / "openai.safetensors"
    run = subprocess.run([sys.executable, "-m", "sae.convert", str(ref.path), str(out), "--dtype", "fp32"],
                         cwd=PACK_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout
    x = activations()
    torch.testing.assert_close(load_sae(out).encode(x), ref.encode(x), rtol=1e-5, atol=1e-5)
