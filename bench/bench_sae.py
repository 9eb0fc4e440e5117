"""Speed and memory of ``SparseAutoencoder.steer`` against its floors, measured side by side in one run.

    python bench/bench_sae.py [--tokens 1024] [--repeats 9] [--device cpu]

Defaults: d_in=1024, d_sae=16384, k=16, 1024 tokens, fp32 (the figures issue 3 asks for). Prints the
median time of each path and the ratios:
  * steer (set; add where active) / bare encoder matmul ``x @ W_enc.T`` (target <= 1.2)
  * naive dense path / steer (target >= 2.4): dense encode, scatter the edit, decode twice, add the error
  * plain add / ``x + v`` (target <= 1.1)
  * peak extra memory of steer (beyond its output) at several token counts (target: flat)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))  # run as a script: the bootstrap
import comfyui_locator  # noqa: E402

comfyui_locator.register_pack()  # from here on the pack (with bench/ and harness/) is comfyui_sae_steering
from comfyui_sae_steering.harness.sae_factory import random_sae  # noqa: E402
from comfyui_sae_steering.sae import Edit  # noqa: E402


def build(d_in, d_sae, k, device, seed=0):
    return random_sae(d_in=d_in, d_sae=d_sae, k=k, seed=seed).to(device)


def naive_set(sae, x, feature, value):
    """The obvious implementation: dense encode, edit, two full decodes, add the error."""
    pre = (x - sae.b_pre) @ sae.W_enc.T + sae.b_enc
    values, indices = torch.relu(pre).topk(sae.k, dim=-1)
    z = torch.zeros_like(pre).scatter_(-1, indices, values)
    edited = z.clone()
    edited[:, feature] = value
    return (edited @ sae.W_dec + sae.b_dec) + x - (z @ sae.W_dec + sae.b_dec)


def median_times(fns: dict, repeats: int, device) -> dict:
    """Median seconds of each function, run round-robin so that a loaded machine's drift hits all alike."""
    times = {name: [] for name in fns}
    for name, fn in fns.items():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def peak_extra_bytes(fn, device):
    """Peak bytes allocated by ``fn`` beyond what it returns (CPU: from the profiler's allocation events)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base - out.numel() * out.element_size()
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    # The profiler books an allocation on the op that made it (its self memory) and a free outside any
    # op as a "[memory]" event: replay both in time order.
    changes = []
    for e in prof.events():
        bytes_ = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if bytes_:
            changes.append((e.time_range.start if bytes_ > 0 else e.time_range.end, bytes_))
    usage = peak = 0
    for _, bytes_ in sorted(changes):
        usage += bytes_
        peak = max(peak, usage)
    return peak - out.numel() * out.element_size()


def reuse_freed_memory():
    """Ask glibc to keep freed blocks instead of returning them to the OS: otherwise every fresh
    multi-MB result page-faults in, which on a loaded VM costs more than the arithmetic being timed
    and would make ``x + v`` and ``steer`` differ by the allocator's mood, not by their work."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 1 << 25)  # M_MMAP_THRESHOLD (32 MB is the most glibc accepts)
    except (OSError, AttributeError):
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=1024)
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    reuse_freed_memory()
    torch.manual_seed(0)
    sae = build(args.d_in, args.d_sae, args.k, device)
    x = torch.randn(args.tokens, args.d_in, device=device)
    feature = int(sae.encode_sparse(x)[1][0, 0])  # a feature that is active somewhere
    set_edit = [Edit(feature, "set", 5.0)]
    active_edit = [Edit(feature, "add", 2.0, only_active=True)]
    add_edit = [Edit(feature, "add", 2.0)]
    v = 2.0 * sae.W_dec[feature]
    W_enc = sae.W_enc

    with torch.inference_mode():
        t = median_times({
            "bare matmul x @ W_enc.T": lambda: x @ W_enc.T,
            "steer set": lambda: sae.steer(x, set_edit),
            "steer add where active": lambda: sae.steer(x, active_edit),
            "naive dense set": lambda: naive_set(sae, x, feature, 5.0),
        }, args.repeats, device)
        t.update(median_times({
            "x + v": lambda: x + v,
            "steer plain add": lambda: sae.steer(x, add_edit),
        }, args.repeats * 5, device))
        torch.testing.assert_close(sae.steer(x, set_edit), naive_set(sae, x, feature, 5.0), rtol=1e-4, atol=1e-4)
        memory = {}
        for n in (1024, 2048, 4096):
            xn = torch.randn(n, args.d_in, device=device)
            memory[n] = (peak_extra_bytes(lambda: sae.steer(xn, set_edit), device),
                         peak_extra_bytes(lambda: naive_set(sae, xn, feature, 5.0), device))

    print(f"SAE d_in={args.d_in} d_sae={args.d_sae} k={args.k}, {args.tokens} tokens, fp32, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for name, seconds in t.items():
        print(f"  {name:<26} {seconds * 1e3:9.2f} ms")
    bare = t["bare matmul x @ W_enc.T"]
    print("ratios (target)")
    print(f"  steer set / bare matmul              {t['steer set'] / bare:5.2f}  (<= 1.2)")
    print(f"  steer add where active / bare matmul {t['steer add where active'] / bare:5.2f}  (<= 1.2)")
    print(f"  naive dense / steer set              {t['naive dense set'] / t['steer set']:5.2f}  (>= 2.4)")
    print(f"  steer plain add / (x + v)            {t['steer plain add'] / t['x + v']:5.2f}  (<= 1.1)")
    print("peak extra memory beyond the output (steer set | naive)")
    for n, (steer_bytes, naive_bytes) in memory.items():
        print(f"  {n:5d} tokens  {steer_bytes / 2**20:8.1f} MiB | {naive_bytes / 2**20:8.1f} MiB")


if __name__ == "__main__":
    main()
