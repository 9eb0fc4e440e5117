"""Data-parallel training under torchrun (2 processes, gloo on the CPU) equals one process with the
same global batch, streams and seed, up to float summation order."""
import os
import subprocess
import sys

import torch

from comfyui_sae_steering.sae import load_sae
from comfyui_sae_steering.harness.comfyui_locator import PACK_ROOT
from train_data import write_shards

ARGS = ["--d-sae", "128", "--k", "4", "--batch-size", "256", "--tokens", str(256 * 20), "--streams", "2",
        "--block-tokens", "400", "--buffer-blocks", "2", "--lr", "4e-3", "--init-tokens", "2048",
        "--checkpoint-every", "7", "--device", "cpu"]


def _run(command, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PACK_ROOT)}
    done = subprocess.run(command, cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_gloo_ranks_match_one_process(tmp_path):
    write_shards(tmp_path / "acts")
    single = tmp_path / "single.safetensors"
    ddp = tmp_path / "ddp.safetensors"
    _run([sys.executable, "-m", "sae.train", str(tmp_path / "acts"), "--out", str(single), *ARGS], tmp_path)
    done = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                 "-m", "sae.train", str(tmp_path / "acts"), "--out", str(ddp), *ARGS], tmp_path)
    assert "step 20/20" in done.stderr
    a, b = load_sae(single), load_sae(ddp)
    assert a.hook == b.hook == "double.img.out.1"
    for name, t in a.tensors().items():
        # measured: at most 2.4e-7 apart after 20 steps (fp32 sums in another order)
        assert torch.allclose(b.tensors()[name], t, rtol=1e-5, atol=1e-6), (name, (b.tensors()[name] - t).abs().max())
    # the run moved far from its start: the match is not two untrained copies
    assert (a.W_dec - load_sae_start(tmp_path)).abs().max() > 1e-2


def load_sae_start(tmp_path):
    """The decoder a run starts from (the same seed's initialisation)."""
    W = torch.randn(128, 32, generator=torch.Generator().manual_seed(0))
    return W / W.norm(dim=1, keepdim=True)
