"""What a feature scan costs next to plain sampling: median of repeats, same model, prompt, seed.

    python bench/feature_scan_cost.py                       # small FLUX on the CPU, a few seconds a run
    python bench/feature_scan_cost.py --hidden 3072 --heads 24 --size 1024 --d-sae 49152 --gpu

The model is FLUX's architecture at the chosen width and depth with random weights (a real FLUX
file would need a 3072-wide model: ``--hidden 3072 --heads 24``); the SAE is random TopK. A scan
is one sampling plus one sparse encode per forward at one site, so its overhead is the encode
(a [tokens, d_in] x [d_in, d_sae] matmul and a top-k) against the whole model's forward: with
only a few blocks here the ratio is an upper bound of what a 57-block FLUX sees.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup(gpu: bool):
    sys.path.insert(0, str(ROOT / "tests"))
    from comfyui_locator import locate_comfyui
    sys.path.insert(0, str(locate_comfyui(allow_clone=False)))
    from comfy.cli_args import args
    args.cpu = not gpu
    import comfy.model_management  # noqa: F401  (after the cpu flag)
    spec = importlib.util.spec_from_file_location("comfyui_sae_steering", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_sae_steering"] = module
    spec.loader.exec_module(module)


def interleaved_medians(runs: dict, repeats: int) -> dict:
    """(wall, process CPU) median seconds of each run, timed in rotation so that a busy machine's
    drift hits all alike; CPU time is the steadier measure where other processes share the cores."""
    for fn in runs.values():
        fn()  # warm-up: loading, allocation, kernel selection
    times = {name: ([], []) for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--depth", type=int, default=2, help="double blocks (single blocks: the same)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--site", default="double.img.out")
    parser.add_argument("--gpu", action="store_true")
    opts = parser.parse_args()
    setup(opts.gpu)

    import torch

    import comfy.model_management
    from comfyui_sae_steering.demo.tiny_flux import build_tiny_flux, empty_latent, sample, tiny_conditioning
    from comfyui_sae_steering.nodes.feature_scan_node import SAEFeatureScan
    from comfyui_sae_steering.nodes.site_tap import TapSpec, attach_tap
    from comfyui_sae_steering.nodes.steer_patch import SteerCallback
    from comfyui_sae_steering.sae import Edit, SparseAutoencoder

    head_dim = opts.hidden // opts.heads
    axes = [head_dim - 2 * (head_dim * 3 // 8), head_dim * 3 // 8, head_dim * 3 // 8]
    model = build_tiny_flux(seed=0, hidden_size=opts.hidden, num_heads=opts.heads, depth=opts.depth,
                            depth_single_blocks=opts.depth, axes_dim=axes)
    if opts.gpu:
        device = comfy.model_management.get_torch_device()
        model.load_device = device
    g = torch.Generator().manual_seed(0)
    d, n = opts.hidden, opts.d_sae
    sae = SparseAutoencoder(torch.randn(n, d, generator=g) / d ** 0.5, torch.zeros(n),
                            torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1), torch.zeros(d),
                            arch="topk", k=opts.k)
    positive, contrast = tiny_conditioning(seed=1), tiny_conditioning(seed=2)
    latent = empty_latent(opts.size, opts.size)
    common = dict(site=opts.site, block=0, tokens="image", steps=opts.steps, seed=0, cfg=1.0, sampler_name="euler",
                  scheduler="simple", top_n=16, latent={"samples": latent})

    def sync():
        if opts.gpu:
            torch.cuda.synchronize()

    steered, _ = attach_tap(model, TapSpec(opts.site, 0), SteerCallback(sae, [Edit(0, "add", 1.0, True)]),
                            d_in=sae.d_in)
    medians = interleaved_medians({
        "plain sampling": lambda: (sample(model, positive, latent=latent, steps=opts.steps, cfg=1.0), sync()),
        "steered sampling": lambda: (sample(steered, positive, latent=latent, steps=opts.steps, cfg=1.0), sync()),
        "scan": lambda: (SAEFeatureScan.execute(model=model, sae=sae, positive=positive, **common), sync()),
        "scan with contrast": lambda: (SAEFeatureScan.execute(model=model, sae=sae, positive=positive,
                                                              contrast=contrast, **common), sync()),
    }, opts.repeats)
    tokens = (opts.size // 16) ** 2
    print(f"FLUX-architecture hidden {d}, {opts.depth}+{opts.depth} blocks, {tokens} image tokens, {opts.steps} steps; "
          f"SAE {d}->{n} k={opts.k} at {opts.site}; median of {opts.repeats} ({'GPU' if opts.gpu else 'CPU'})")
    plain_wall, plain_cpu = medians["plain sampling"]
    print(f"{'':20s} {'wall s':>8s} {'ratio':>6s}   {'CPU s':>8s} {'ratio':>6s}")
    for name, (wall, cpu) in medians.items():
        print(f"{name:20s} {wall:8.3f} {wall / plain_wall:6.2f}   {cpu:8.3f} {cpu / plain_cpu:6.2f}")

if __name__ == "__main__":
    main()
