"""bench/family_overhead.py in its quickest mode: every family's row is printed, each steered through SAESteer at
a site of the same tokens and width (Z-Image: its narrowest, 256; no timing is asserted: the figures are the
benchmark's to report)."""
from __future__ import annotations

from comfyui_sae_steering.bench.family_overhead import CASES, parse_args, run


def test_quick_run_prints_every_family(capsys):
    results = run(parse_args(["--quick"]))
    out = capsys.readouterr().out
    assert [r["case"] for r in results] == list(CASES)
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| family")]
    assert [row.split(" | ")[0][2:] for row in rows] == [case.family for case in CASES]
    # 64 px: a 4x4 grid at every site (Wan: 4 frames of 2x2), one forward (1 step, cfg 1); width 64 (Z-Image: 256)
    assert {(r["tokens"], r["forwards"]) for r in results} == {(16, 1)}
    assert [r["width"] for r in results] == [256 if "Z-Image" in case.family else 64 for case in CASES]
    assert all(r["d_sae"] == 16 * r["width"] for r in results)
    assert {"FLUX.2", "Chroma", "SD3/3.5", "Qwen-Image", "Lumina2", "Z-Image", "Wan 2.1", "Wan 2.2"} <= {
        case.family.split(" (")[0] for case in CASES}
