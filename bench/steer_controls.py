"""Tiny World's measured answer to "do the steering controls do what they say": regional mask, concept erasure,
the contrast finder.

    .venv/bin/python -m bench.steer_controls [--seeds 8] [--strength 4] [--out output/steer_controls]

(a) Regional mask. "a red circle" is steered towards "blue" (SAEFluxSteer, mode add, ``--strength`` × the
    blue feature's mean, at each shipped SAE's site) with no mask and with a mask on the left half of the image.
    Each image is read per half by the project's classifier (the other half painted background): a half
    "changed" when its object part reads as another colour than in the unsteered image of the same seed. Printed:
    of the samples whose object has a part in that half, the fraction where that half changed, left and right.
(b) Concept erasure. SAEConceptErase of ``--erase-colour`` (default red): features the labelled one or the
    contrast's top 4 (the colour's three prompts against the other colours' nine), threshold the neutral
    mean, target −multiplier × the feature's mean on the concept, scope per token (SAeUron) and per image,
    from ``--erase-start`` on. Printed per shape: % of samples no longer read as the colour, % with the
    shape kept (``classify.object_kept`` against the unsteered image: same shape reading, object overlap
    IoU >= 0.5); and % of one prompt of each other colour left as it was (colour and shape).
(c) Contrast finder. SAEFeatureContrast, concept set "a C circle/square/triangle" against the other colours'
    prompts (and likewise per shape), ``--finder-steps`` steps each: the rank of the feature labelled C among
    all features.
20 euler steps, cfg 1, seeds 0..N-1, as bench.steer_effect samples.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.steer_controls", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8, help="samples per setting (seeds 0..N-1)")
    p.add_argument("--strength", type=float, default=4.0, help="mask test: strength in × feature mean")
    p.add_argument("--multipliers", default="0.5,1,2", help="erasure multipliers to try")
    p.add_argument("--erase-colour", default="red", help="erasure: the colour erased")
    p.add_argument("--erase-start", type=float, default=0.0,
                   help="erasure: start_percent (0: every step, as SAeUron erases)")
    p.add_argument("--finder-steps", type=int, default=20,
                   help="contrast finder: sampling steps per prompt (20: the sampling the labels were found on)")
    p.add_argument("--parts", default="mask,erase,contrast", help="which of (a) mask, (b) erase, (c) contrast to run")
    p.add_argument("--out", default="output/steer_controls")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from bench.cpu_comfyui import start_on_cpu
    start_on_cpu()
    import comfy.utils
    comfy.utils.PROGRESS_BAR_ENABLED = False  # the nodes' samplings would draw bars into the printed table
    started = time.perf_counter()
    results = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "steer_controls.json").write_text(json.dumps(results, indent=1) + "\n")
    sys.stdout.write(format_results(results) + f"\n({time.perf_counter() - started:.0f} s; wrote {out / 'steer_controls.json'})\n")
    return 0


def half_readings(image):
    """(left, right) classifier readings of each half, the other half painted background."""
    import numpy as np

    from comfyui_sae_steering.nodes.tiny_world.classify import classify
    from comfyui_sae_steering.nodes.tiny_world.world import BACKGROUND
    readings = []
    for keep in (slice(0, image.shape[1] // 2), slice(image.shape[1] // 2, None)):
        half = np.empty_like(image)
        half[:] = np.asarray(BACKGROUND, image.dtype)
        half[:, keep] = image[:, keep]
        readings.append(classify(half))
    return readings


def mask_test(model, clip, vae, sae, seeds, strength) -> dict:
    import torch

    from comfyui_sae_steering.demo.tiny_world_eval import sample_images, target_scale
    from comfyui_sae_steering.nodes.steer.flux_steer_node import SAEFluxSteer
    from comfyui_sae_steering.nodes.tiny_world.world import IMAGE_SIZE

    site, block = sae.hook.rsplit(".", 1)
    scale = target_scale(model, clip, sae, "a blue circle")[0]
    left = torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE)
    left[:, :, : IMAGE_SIZE // 2] = 1.0
    baseline = [half_readings(d.image) for d in sample_images(model, clip, vae, "a red circle", seeds)]
    out = {}
    for name, mask in (("no mask", None), ("left-half mask", left)):
        steered = SAEFluxSteer.execute(model=model, sae=sae, site=site, block=int(block), tokens="image",
                                       features="blue", strength=strength, mode="add", keep_error=True,
                                       start_percent=0.0, end_percent=1.0, apply_to="both", scale=scale,
                                       strength_unit="× feature mean", mask=mask).result[0]
        drawn = [half_readings(d.image) for d in sample_images(steered, clip, vae, "a red circle", seeds)]
        row = {}
        for side, i in (("left", 0), ("right", 1)):
            present = [(b[i], a[i]) for b, a in zip(baseline, drawn) if b[i].colour is not None]
            changed = sum(a.colour != b.colour for b, a in present)
            to_blue = sum(a.colour == "blue" for b, a in present)
            row[side] = {"samples": len(present), "changed": changed / max(len(present), 1),
                         "blue": to_blue / max(len(present), 1)}
        out[name] = row
    return out


def erase_prompts(colour: str) -> tuple[list[str], list[str]]:
    """(the colour's three prompts, one prompt of each other colour: what erasing the colour should leave be)."""
    from comfyui_sae_steering.nodes.tiny_world.world import COLOURS, SHAPES, prompt_for

    others = [c for c in COLOURS if c != colour]
    return [prompt_for(colour, s) for s in SHAPES], [prompt_for(c, s) for c, s in zip(others, SHAPES)]


def erase_test(model, clip, vae, sae, seeds, multipliers, start_percent, colour) -> list[dict]:
    import torch

    from comfyui_sae_steering.demo.tiny_world_eval import sample_images
    from comfyui_sae_steering.nodes.steer.concept_erase_node import SCOPES, SAEConceptErase
    from comfyui_sae_steering.nodes.tiny_world.classify import classify, object_kept
    from comfyui_sae_steering.nodes.tiny_world.world import COLOURS, SHAPES, prompt_for

    site, block = sae.hook.rsplit(".", 1)
    concept, others = erase_prompts(colour)
    prompts = (*concept, *others)
    baseline = {p: [classify(d.image) for d in sample_images(model, clip, vae, p, seeds)] for p in prompts}
    neutral = "\n".join(prompt_for(c, s) for c in COLOURS if c != colour for s in SHAPES)
    rows = []
    for scope in SCOPES:
        for features, label in ((colour, f"labelled '{colour}'"), ("", "by contrast, top 4")):
            for multiplier in multipliers:
                model_out, report = SAEConceptErase.execute(
                    model=model, sae=sae, site=site, block=int(block), tokens="image", features=features,
                    multiplier=multiplier, push_to="−multiplier × feature mean", threshold="neutral mean",
                    threshold_value=0.0, apply_to="both", top_n=4, latent={"samples": torch.zeros(4, 16, 8, 8)},
                    clip=clip, concept_prompts="\n".join(concept), neutral_prompts=neutral, steps=8, seed=0,
                    scope=scope, start_percent=start_percent).result
                chosen = [line.split(":")[0] for line in report.splitlines()[1:] if ": above" in line]
                per_prompt = {}
                for prompt in prompts:
                    after = [classify(d.image) for d in sample_images(model_out, clip, vae, prompt, seeds)]
                    kept = [object_kept(b, a) for b, a in zip(baseline[prompt], after)]
                    per_prompt[prompt] = {
                        "erased": sum(a.colour != colour for a in after) / len(after),
                        "shape_kept": sum(kept) / len(after),
                        "unchanged": sum(k and a.colour == b.colour for k, a, b in zip(kept, after, baseline[prompt])) / len(after),
                        "colours": [a.colour for a in after]}
                mean = lambda key, group: sum(per_prompt[p][key] for p in group) / len(group)  # noqa: E731
                rows.append({"colour": colour, "scope": scope, "features": label, "chosen": chosen,
                             "multiplier": multiplier, "concept": concept, "others": others,
                             "erased": mean("erased", concept), "shape_kept": mean("shape_kept", concept),
                             "others_unchanged": mean("unchanged", others), "per_prompt": per_prompt})
    return rows


def contrast_test(model, clip, sae, seeds, steps: int) -> list[dict]:
    import torch

    from comfyui_sae_steering.nodes.scan.feature_contrast_node import SAEFeatureContrast
    from comfyui_sae_steering.nodes.tiny_world.world import COLOURS, SHAPES

    site, block = sae.hook.rsplit(".", 1)
    by_label = {label: f for f, label in sae.labels.items()}
    rows = []
    for attribute, values in (("colour", list(COLOURS)), ("shape", list(SHAPES))):
        for value in values:
            def prompts(keep):
                return "\n".join(f"a {c} {s}" for c in COLOURS for s in SHAPES
                                 if ((c if attribute == "colour" else s) == value) == keep)
            for rank_by in ("normalised difference", "frequency difference"):
                _, _, report = SAEFeatureContrast.execute(
                    model=model, sae=sae, latent={"samples": torch.zeros(len(seeds), 16, 8, 8)}, site=site,
                    block=int(block), tokens="image", steps=steps, seed=0, cfg=1.0, sampler_name="euler",
                    scheduler="simple", top_n=sae.d_sae, rank_by=rank_by, strength=1.0, clip=clip,
                    concept_prompts=prompts(True), neutral_prompts=prompts(False)).result
                ranked = [int(line.split()[1]) for line in report.splitlines()[2:] if line.strip() and line.split()[0].isdigit()]
                feature = by_label.get(value)
                rows.append({"attribute": attribute, "value": value, "rank_by": rank_by, "feature": feature,
                             "rank": ranked.index(feature) + 1 if feature in ranked else None, "top3": ranked[:3]})
    return rows


def run(args) -> dict:
    from comfyui_sae_steering.nodes.sae_loader import SAE_CACHE
    from comfyui_sae_steering.nodes.tiny_world import models

    chosen = args.parts.split(",")
    if not set(chosen) <= {"mask", "erase", "contrast"}:
        raise SystemExit(f"--parts {args.parts!r}: choose from mask, erase, contrast")
    seeds = list(range(args.seeds))
    multipliers = [float(m) for m in args.multipliers.split(",")]
    model, clip, vae, _ = models.load_models()
    results = {}
    for sae_file in models.SAE_FILES:
        sae = SAE_CACHE.get(str(models.weight_path(sae_file)), "auto")
        parts = {"mask": lambda: mask_test(model, clip, vae, sae, seeds, args.strength),
                 "erase": lambda: erase_test(model, clip, vae, sae, seeds, multipliers, args.erase_start,
                                             args.erase_colour),
                 "contrast": lambda: contrast_test(model, clip, sae, seeds, args.finder_steps)}
        results[sae.hook] = {name: measure() for name, measure in parts.items() if name in chosen}
    return results


def format_results(results: dict) -> str:
    lines = []
    for site, r in results.items():
        lines.append(f"## {site}")
        if "mask" in r:
            lines.append("(a) 'a red circle' steered to blue: fraction of samples whose half changed colour (-> blue)")
            for name, row in r["mask"].items():
                cells = [f"{side} {row[side]['changed']:.0%} ({row[side]['blue']:.0%}) of {row[side]['samples']}"
                         for side in ("left", "right")]
                lines.append(f"    {name:15s} " + "; ".join(cells))
        if "erase" in r:
            colour = r["erase"][0]["colour"]
            lines.append(f"(b) erase '{colour}' (concept: its three prompts, neutral: the other colours' prompts): "
                         f"% no longer {colour} / % shape kept, per shape and all; % of other colours' objects unchanged")
            for row in r["erase"]:
                cells = [f"{p.split()[-1]} {row['per_prompt'][p]['erased']:.0%}/{row['per_prompt'][p]['shape_kept']:.0%}"
                         for p in row["concept"]]
                lines.append(f"    {row['scope']:9s} {row['features']:18s} ×{row['multiplier']:g}: {', '.join(cells)}; "
                             f"all {row['erased']:.0%}/{row['shape_kept']:.0%}; others unchanged {row['others_unchanged']:.0%}"
                             f"  (features {', '.join(row['chosen'])})")
        if "contrast" in r:
            lines.append("(c) contrast finder: rank of the labelled feature (1 = first)")
            for row in r["contrast"]:
                lines.append(f"    {row['attribute']} {row['value']:8s} {row['rank_by']:22s} feature {row['feature']}: "
                             f"rank {row['rank']}  (top 3: {row['top3']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
