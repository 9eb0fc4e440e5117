"""Every colour change Tiny World's loader SAE makes, at a few strengths: the table in docs/tiny_world.md.

    .venv/bin/python -m bench.colour_changes [--seeds 12] [--strengths 2,4,8] [--start 0.4]

For each change ("a red circle" -> blue, ...), SAE Steer FLUX adds the target colour's labelled feature
(`add`, keep_error on, from ``--start`` of the sampling, strength in × the feature's mean measured on
"a <target> circle") at the loader SAE's site, and the project's classifier scores success and kept as
bench.steer_effect does (``demo.tiny_world_eval.score``). Prints one table: turned to the target / kept.
"""
from __future__ import annotations

import argparse
import sys

CHANGES = [("a red circle", "blue"), ("a red square", "blue"), ("a red triangle", "blue"),
           ("a green circle", "blue"), ("a yellow circle", "blue"), ("a red circle", "yellow"),
           ("a green square", "yellow"), ("a blue circle", "red"), ("a red circle", "green"),
           ("a yellow triangle", "green")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.colour_changes", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--strengths", default="2,4,8", help="comma-separated, × feature mean")
    p.add_argument("--start", type=float, default=0.4, help="start_percent of the steer")
    args = p.parse_args(argv)
    from bench.cpu_comfyui import start_on_cpu
    start_on_cpu()
    from comfyui_sae_steering.nodes.tiny_world.loader_node import TinyWorldLoader

    from comfyui_sae_steering.demo.tiny_world_eval import sample_images, score, steer, target_scale

    model, clip, vae, sae = TinyWorldLoader.execute().result
    seeds, strengths = list(range(args.seeds)), [float(s) for s in args.strengths.split(",")]
    lines = [f"`add` at {sae.hook}, keep_error on, from {args.start:.0%}; {args.seeds} seeds; turned / kept",
             "| change | " + " | ".join(f"× {s:g}" for s in strengths) + " |", "|---|" + "---|" * len(strengths)]
    # one measurement per target colour (several changes share one), where its feature fires
    scales = {t: target_scale(model, clip, sae, f"a {t} circle")[0] for t in dict.fromkeys(t for _, t in CHANGES)}
    for prompt, target in CHANGES:
        scale = scales[target]
        baseline = sample_images(model, clip, vae, prompt, seeds)
        cells = []
        for strength in strengths:
            steered = steer(model, sae, scale, target, strength, "add", True, start_percent=args.start)
            result = score(baseline, sample_images(steered, clip, vae, prompt, seeds), "colour", target, "shape")
            cells.append(f"{result['success']:.0%} / {result['kept']:.0%}")
        lines.append(f"| {prompt} -> {target} | " + " | ".join(cells) + " |")
        sys.stdout.write(lines[-1] + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
