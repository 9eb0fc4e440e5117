"""Does steering change what the model draws? Tiny World's measured answer to "which strength, which mode".

    .venv/bin/python -m bench.steer_effect [--seeds 8] [--quick] [--out output/steer_effect]

For each attribute change (a red circle -> blue, a green square -> yellow, a red circle -> square), at
each site with a shipped SAE, each mode (add, add where active, set, and move: the features entry
"red>blue", which removes the source feature and adds the target where the source is found) with
keep_error on and off over the whole sampling, and keep_error on from 40 % of the sampling on, and
each strength in × feature mean (the target feature's mean activation where active, measured by
SAEActivationScale on a prompt that has the target attribute), the real SAEFluxSteer node patches the
model and ComfyUI samples it (20 euler steps, cfg 1, seeds 0..N-1). The project's pixel classifier
(nodes/tiny_world/classify.py) reads each image:
- success: the steered attribute reads as the target;
- kept: the other attribute (shape for colour changes, colour for shape changes) reads as in the unsteered
  image of the same seed, and the object stays where it was (its pixels overlap the unsteered object's
  with an intersection-over-union of at least 0.5, ``classify.object_kept``): a smeared blob that happens to read as a circle
  is not a kept circle;
- outside: mean absolute pixel change (0-255) on pixels outside the object in both images (the background).
The reference row per change, "prompt edit", samples the same seeds with the target's prompt
("a blue circle") and scores it the same way.
Prints one table and saves plots (success and kept vs strength, one line per mode) and the table as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CHANGES = [  # (prompt, attribute, target label, what must stay)
    ("a red circle", "colour", "blue", "shape"),
    ("a green square", "colour", "yellow", "shape"),
    ("a red circle", "shape", "square", "colour"),
]
MODES = ["add", "add where active", "set", "move"]  # move: features "red>blue" (mode add), see nodes/steer/feature_spec.py
STRENGTHS = [0.5, 1, 2, 3, 4, 8, 16]
LATE_START = 0.4  # the second step window: from 40 % of the sampling on, once the layout is set


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.steer_effect", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8, help="samples per setting (seeds 0..N-1)")
    p.add_argument("--quick", action="store_true", help="3 seeds, strengths 1, 4, 16, keep_error on only")
    p.add_argument("--out", default="output/steer_effect")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from bench.cpu_comfyui import start_on_cpu
    start_on_cpu()
    rows, edited = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "steer_effect.json").write_text(json.dumps({"steered": rows, "prompt_edit": edited}, indent=1) + "\n")
    sys.stdout.write(format_table(rows) + "\n\n" + format_prompt_edits(edited) + "\n")
    plot(rows, out / "steer_effect.png")
    sys.stdout.write(f"wrote {out / 'steer_effect.json'} and {out / 'steer_effect.png'}\n")
    return 0


def run(args) -> tuple[list[dict], list[dict]]:
    from comfyui_sae_steering.nodes.sae_loader import SAE_CACHE
    from comfyui_sae_steering.nodes.tiny_world import models

    from comfyui_sae_steering.demo.tiny_world_eval import sample_images, score, steer, target_scale

    seeds = list(range(3 if args.quick else args.seeds))
    strengths = [1, 2, 4] if args.quick else STRENGTHS
    # (keep_error, start_percent): keep_error on and off over the whole sampling, and on from LATE_START
    settings = [(True, 0.0), (True, LATE_START)] + ([] if args.quick else [(False, 0.0)])
    model, clip, vae, _ = models.load_models()
    rows, edited = [], {}
    for sae_file in models.SAE_FILES:
        sae = SAE_CACHE.get(str(models.weight_path(sae_file)), "auto")
        for prompt, attribute, target, stays in CHANGES:
            words = prompt.split()
            source = {"colour": words[1], "shape": words[2]}
            target_prompt = prompt.replace(source[attribute], target)
            scale = target_scale(model, clip, sae, target_prompt)[0]
            baseline = sample_images(model, clip, vae, prompt, seeds)
            if (prompt, target) not in edited:  # the reference: the prompt itself says the target
                edited[(prompt, target)] = {"change": f"{prompt} -> {target}", "prompt": target_prompt,
                                            **score(baseline, sample_images(model, clip, vae, target_prompt, seeds),
                                                    attribute, target, stays), "samples": len(seeds)}
            for mode in MODES:
                for keep_error, start in settings:
                    for strength in strengths:
                        started = time.perf_counter()
                        features = f"{source[attribute]}>{target}" if mode == "move" else target
                        steered = steer(model, sae, scale, features, strength, "add" if mode == "move" else mode,
                                        keep_error, start_percent=start)
                        drawn = sample_images(steered, clip, vae, prompt, seeds)
                        rows.append({"site": sae.hook, "change": f"{prompt} -> {target}", "mode": mode,
                                     "keep_error": keep_error, "start": start, "strength": strength,
                                     **score(baseline, drawn, attribute, target, stays), "samples": len(seeds),
                                     "seconds": round(time.perf_counter() - started, 2)})
    return rows, list(edited.values())


def format_prompt_edits(edited: list[dict]) -> str:
    lines = ["prompt edit, no steering: the same seeds sampled with the target's prompt. Its kept says how often the "
             "model, told the target, draws it where and as it drew the source: a steer that keeps more beats "
             "rewriting the prompt.",
             "| change | prompt | success | kept | outside |", "|---|---|---|---|---|"]
    lines += [f"| {e['change']} | {e['prompt']} | {e['success']:.0%} | {e['kept']:.0%} | {e['outside']:.1f} |"
              for e in edited]
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    lines = ["| site | change | mode | keep_error | from | " + " | ".join(f"×{s}" for s in sorted({r['strength'] for r in rows}))
             + " |", "|---|---|---|---|---|" + "---|" * len({r["strength"] for r in rows})]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["site"], r["change"], r["mode"], r["keep_error"], r.get("start", 0.0)), []).append(r)
    for (site, change, mode, keep, start), group in groups.items():
        cells = [f"{r['success']:.0%} / {r['kept']:.0%} / {r['outside']:.1f}" for r in sorted(group, key=lambda r: r["strength"])]
        lines.append(f"| {site} | {change} | {mode} | {'on' if keep else 'off'} | {start:.0%} | " + " | ".join(cells) + " |")
    lines.append("cells: success / kept (other attribute unchanged) / mean pixel change outside the object (0-255)")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path):
    """One panel per (site, change): success (solid) and kept (dotted) against log2 strength, a colour per mode."""
    from PIL import Image, ImageDraw

    panels = sorted({(r["site"], r["change"]) for r in rows})
    strengths = sorted({r["strength"] for r in rows})
    width, height = 360, 240
    image = Image.new("RGB", (width * 3, height * ((len(panels) + 2) // 3)), "white")
    draw = ImageDraw.Draw(image)
    colours = {"add": (200, 40, 40), "add where active": (40, 90, 210), "set": (30, 150, 60), "move": (150, 60, 170)}
    for i, (site, change) in enumerate(panels):
        ox, oy = (i % 3) * width, (i // 3) * height
        left, top, right, bottom = ox + 40, oy + 30, ox + width - 15, oy + height - 35
        draw.rectangle([left, top, right, bottom], outline="black")
        draw.text((left, oy + 8), f"{site}: {change}", fill="black")
        for j, s in enumerate(strengths):
            x = left + (right - left) * j / max(1, len(strengths) - 1)
            draw.text((x - 6, bottom + 5), f"{s:g}", fill="black")
        draw.text((left - 32, top - 4), "100%", fill="black")
        draw.text((left - 20, bottom - 8), "0%", fill="black")
        for mode, colour in colours.items():
            group = sorted((r for r in rows if (r["site"], r["change"], r["mode"]) == (site, change, mode)
                            and r["keep_error"] and r.get("start", 0.0) == LATE_START), key=lambda r: r["strength"])
            for key, dash in (("success", False), ("kept", True)):
                points = [(left + (right - left) * strengths.index(r["strength"]) / max(1, len(strengths) - 1),
                           bottom - (bottom - top) * r[key]) for r in group]
                for a, b in zip(points, points[1:]):
                    if dash:
                        for t in np.linspace(0, 1, 8)[::2]:
                            p0 = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
                            p1 = (a[0] + (b[0] - a[0]) * (t + 1 / 8), a[1] + (b[1] - a[1]) * (t + 1 / 8))
                            draw.line([p0, p1], fill=colour, width=2)
                    else:
                        draw.line([a, b], fill=colour, width=2)
        for k, (mode, colour) in enumerate(colours.items()):
            draw.text((right - 120, top + 6 + 12 * k), f"{mode}", fill=colour)
    draw.text((10, image.height - 14), f"solid: success; dotted: other attribute kept; x: strength (x feature mean); "
              f"keep_error on, steering from {LATE_START:.0%} of the sampling", fill="black")
    image.save(path)


if __name__ == "__main__":
    sys.exit(main())
