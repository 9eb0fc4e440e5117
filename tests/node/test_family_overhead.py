"""bench/family_overhead.py in its quickest mode: every family's row is printed, each steered through SAESteer at
a site of the same width and tokens (no timing is asserted: the figures are the benchmark's to report)."""
from __future__ import annotations

from comfyui_sae_steering.bench.family_overhead import CASES, parse_args, run


def test_quick_run_prints_every_family(capsys):
    results = run(parse_args(["--quick"]))
    out = capsys.readouterr().out
    assert [r["case"] for r in results] == list(CASES)
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| family")]
    assert [row.split(" | ")[0][2:] for row in rows] == [case.family for case in CASES]
    # 64 px: a 4x4 grid at every site, width 64, one forward (1 step, cfg 1)
    assert {(r["tokens"], r["width"], r["d_sae"], r["forwards"]) for r in results} == {(16, 64, 1024, 1)}
