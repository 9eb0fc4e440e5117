"""The main job's embedded default: steer Tiny World and show it.

Load Tiny World (the pack's loader node) -> encode "a red circle" (ComfyUI's CLIPTextEncode) ->
Measure Activation Scale at the SAE's site (with the SAE, on the target prompt, so "x feature mean" has
a unit) -> SAE Steer FLUX (the feature labelled with the target colour, in units of its mean) -> the
same seeds sampled with and without the steer -> decoded by the world's VAE. Writes a grid (rows: seeds;
columns: unsteered, steered, for each prompt), the scale report and plot, and a small effectiveness
table read by the project's pixel classifier.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PROMPTS = ["a red circle", "a red square", "a red triangle"]
TARGET = "blue"
MODE = "add"
STRENGTH = 4.0
START = 0.4  # steer from 40 % of the sampling on: the layout is set by then, the colour is not (bench.steer_effect)


def run(out: Path, seeds: int = 4, strengths=(1.0, 2.0, 4.0, 8.0), mode: str = MODE, target: str = TARGET,
        strength: float = STRENGTH, start: float = START, log=print) -> list[str]:
    import torch

    from .tiny_world_eval import pack, sample_images, score, steer, target_scale

    TinyWorldLoader = pack("nodes.tiny_world.loader_node").TinyWorldLoader  # noqa: N806
    classify = pack("nodes.tiny_world.classify").classify

    torch.set_num_threads(1)
    t = time.perf_counter()
    model, clip, vae, sae = TinyWorldLoader.execute().result
    site, block = sae.hook.rsplit(".", 1)
    log(f"Tiny World loaded in {time.perf_counter() - t:.1f} s: SAE {sae.d_in} -> {sae.d_sae} (k={sae.k}) at "
        f"{site} block {block}; labels: " + ", ".join(f"{i}={n}" for i, n in sorted(sae.labels.items())))
    scale, report, plot = target_scale(model, clip, sae, f"a {target} circle")[:3]
    (out / "scale_report.txt").write_text(report + "\n")
    Image.fromarray((plot[0].numpy() * 255).astype(np.uint8)).save(out / "scale_plot.png")

    steered_model = steer(model, sae, scale, target, strength, mode, start_percent=start)
    columns = []
    for prompt in PROMPTS:
        columns.append(sample_images(model, clip, vae, prompt, range(seeds)))
        columns.append(sample_images(steered_model, clip, vae, prompt, range(seeds)))
    # "x", not "×": PIL's default font has no "×"
    grid = draw_grid(columns, [f"{p}" if i % 2 == 0 else f"+ {target} x{strength:g}" for p in PROMPTS for i in (0, 1)])
    grid.save(out / "tiny_world_grid.png")

    unsteered = [d for col in columns[::2] for d in col]
    rows = []
    for s in strengths:
        m = steer(model, sae, scale, target, s, mode, start_percent=start)
        result = score(unsteered, [d for p in PROMPTS for d in sample_images(m, clip, vae, p, range(seeds))],
                       "colour", target, "shape")
        rows.append({"strength": s, "success": result["success"], "shape_kept": result["kept"]})
    base = [(classify(d.image), d.prompt) for d in unsteered]
    table = [f"steering '{target}' ({mode}, keep_error on, from {start:.0%} of the sampling) on {', '.join(PROMPTS)}; "
             f"{seeds} seeds each; "
             f"classifier: nodes/tiny_world/classify.py",
             f"unsteered: colour red {np.mean([r.colour == 'red' for r, _ in base]):.0%}, "
             f"shape right {np.mean([r.shape is not None and r.shape in p for r, p in base]):.0%}",
             "| strength (× feature mean) | turned blue | shape kept (same shape, in place) |", "|---|---|---|"]
    table += [f"| {r['strength']:g} | {r['success']:.0%} | {r['shape_kept']:.0%} |" for r in rows]
    (out / "effectiveness.md").write_text("\n".join(table) + "\n")
    (out / "effectiveness.json").write_text(json.dumps(rows, indent=1, default=float) + "\n")
    log("\n".join(table))
    return ["tiny_world_grid.png", "scale_report.txt", "scale_plot.png", "effectiveness.md", "effectiveness.json"]


def draw_grid(columns, titles, zoom: int = 2) -> Image.Image:
    """Columns of images (one list per column) with a title above each column, scaled up ``zoom`` times."""
    size = columns[0][0].image.shape[0] * zoom
    pad, head = 4, 16
    width = len(columns) * (size + pad) + pad
    height = head + len(columns[0]) * (size + pad) + pad
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for c, (column, title) in enumerate(zip(columns, titles)):
        x = pad + c * (size + pad)
        draw.text((x, 2), title, fill=(0, 0, 0))
        for r, drawn in enumerate(column):
            tile = Image.fromarray(drawn.image).resize((size, size), Image.NEAREST)
            grid.paste(tile, (x, head + pad + r * (size + pad)))
    return grid
