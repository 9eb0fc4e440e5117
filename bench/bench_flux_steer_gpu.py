"""The steering benchmark on full-size FLUX.1 on a GPU: 19 double + 38 single blocks, bf16, 1024 image
tokens, random weights (built on the GPU, no download), CUDA-synchronised, warm-up rounds first.

    python bench/bench_flux_steer_gpu.py                       # needs ~26 GB of GPU memory
    python bench/bench_flux_steer_gpu.py --repeats 40 --steps 8
    python bench/bench_flux_steer_gpu.py --device cpu --depth-double 1 --depth-single 1 --build-only  # smoke test

Any option of ``bench_flux_steer.py`` may follow and overrides the full-size defaults.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))  # run as a script: the bootstrap
import comfyui_locator  # noqa: E402

comfyui_locator.register_pack()  # from here on the pack (with bench/ and harness/) is comfyui_sae_steering
from comfyui_sae_steering.bench.bench_flux_steer import main  # noqa: E402

if __name__ == "__main__":
    main(["--full", *sys.argv[1:]])
