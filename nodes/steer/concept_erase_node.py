"""``SAEConceptErase`` ("SAE Erase Concept"): push a concept's features down wherever they fire above a threshold.

Features are given (index or label) or found by contrast of the concept set against the neutral set (as SAE
Find Features ranks them). Thresholds (the neutral mean) and targets (−multiplier × the feature's mean
where it fires for the concept) come from those sets measured here, or from a value / a measured scale.
The returned model erases every step (or from start_percent to end_percent), on both CFG halves by default,
on each token above the threshold or (scope "per image") on every token of an image whose mean is above. With a
concept set, one preview sampling of its first conditioning reports how much each step removed.
"""
from __future__ import annotations

import dataclasses
import logging

import torch
from comfy_api.latest import io

from ...sae.contrast import contrast
from ...sae.labels import describe
from ..comfy_types import SAEScaleType, SAEType
from ..scan.contrast_sets import conditioning_set, measure_sets
from ..sites.any_site import attach_site, describe_site, resolve_site
from ..sites.choice import site_inputs
from ..sites.flux_sites import APPLY_TO_CHOICES
from ..sites.sampling import run_sampling
from ..sites.tap import TapSpec
from .erase_callback import EraseCallback
from .feature_spec import parse_features

PUSH_TO = ["−multiplier × feature mean", "zero"]
THRESHOLDS = ["neutral mean", "value"]
SCOPES = ["per token", "per image"]
log = logging.getLogger(__name__)


def optional_set(name, conditioning, prompts, clip):
    """A set's conditionings, or [] when nothing was connected or written for it."""
    if conditioning is None and not (prompts or "").strip():
        return []
    return conditioning_set(name, conditioning, prompts, clip)


def erase_plan(sae, site, block, features_text, multiplier, push_to, threshold, threshold_value, concept, neutral,
               top_n, scale):
    """(features, threshold [F], target [F], lines) from the inputs and the measured sets (FeatureStats or None)."""
    if push_to not in PUSH_TO:
        raise ValueError(f"push_to {push_to!r} is not one of {', '.join(PUSH_TO)}")
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold {threshold!r} is not one of {', '.join(THRESHOLDS)}")
    if (features_text or "").strip():
        chosen = parse_features(features_text, multiplier, sae.d_sae, labels=sae.labels)
    else:
        if concept is None or neutral is None:
            raise ValueError("features: empty, so they are found by contrast, which needs both sets: connect concept "
                             "and neutral (or write concept_prompts and neutral_prompts with a clip)")
        found = contrast(concept, neutral, top_n)
        chosen = [(f, multiplier) for f, s in zip(found.features, found.score) if s > 0]
        if not chosen:
            raise ValueError("features: no feature fires more for the concept than for the neutral set here")
    features = [f for f, _ in chosen]
    if threshold == "neutral mean":
        if neutral is None:
            raise ValueError("threshold: 'neutral mean' needs the neutral set (connect neutral or write "
                             "neutral_prompts), or choose 'value'")
        thresholds = neutral.mean().float().cpu()[features]
    else:
        thresholds = torch.full((len(features),), float(threshold_value))
    if push_to == "zero":
        means, targets = None, torch.zeros(len(features))
    else:
        means = feature_means(sae, site, block, features, concept, scale)
        targets = torch.tensor([-m for _, m in chosen]) * means
    lines = [f"{describe(f, sae.labels)}: above {float(t):.4g} ({threshold}) -> {float(v):.4g}"
             + ("" if means is None else f" (−{m:g} × mean {float(means[i]):.4g})")
             for i, ((f, m), t, v) in enumerate(zip(chosen, thresholds, targets))]
    return features, thresholds, targets, lines


def feature_means(sae, site, block, features, concept, scale) -> torch.Tensor:
    """Each feature's mean where it fires: on the concept set, else from a measured scale."""
    if concept is not None:
        return concept.active_mean().float().cpu()[features]
    if scale is None:
        raise ValueError("push_to: '−multiplier × feature mean' needs the feature means: connect the concept set "
                         "or a scale measured at this site, or push to zero")
    return torch.tensor([scale.feature_mean(site, block, f, sae.d_sae, "× feature mean") for f in features])


def removal_report(callback: EraseCallback, features, labels) -> list[str]:
    """Per step (highest sigma first): mean amount removed per token of each feature, and where it was erased."""
    lines = ["removed per step (mean z − target over the step's tokens; tokens erased):"]
    for step, sigma in enumerate(sorted(callback.steps, reverse=True)):
        r = callback.steps[sigma]
        cells = [f"{describe(f, labels)} {float(r.removed[i]) / max(r.tokens, 1):.4g} ({int(r.erased[i])}/{r.tokens})"
                 for i, f in enumerate(features)]
        lines.append(f"step {step} sigma {sigma:.4g}: " + ", ".join(cells))
    return lines


class SAEConceptErase(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEConceptErase",
            display_name="SAE Erase Concept",
            category="sae_steering",
            description="Erase a concept: where its SAE features fire above a threshold, push them to −multiplier × "
                        "their mean (or 0), every step, keeping the SAE's error. Features given or found by contrast.",
            inputs=[
                io.Model.Input("model"),
                SAEType.Input("sae"),
                *site_inputs(),
                io.String.Input("features", default="", tooltip="Indices or labels (96, red:2 = multiplier 2); "
                                                                 "empty: found by contrast of concept vs neutral."),
                io.Float.Input("multiplier", default=1.0, min=0.0, max=1000.0, step=0.01,
                               tooltip="Target = −multiplier × the feature's mean where it fires for the concept."),
                io.Combo.Input("push_to", options=PUSH_TO, default=PUSH_TO[0]),
                io.Combo.Input("threshold", options=THRESHOLDS, default=THRESHOLDS[0],
                               tooltip="Erase only where the feature exceeds its mean on the neutral set, or a value."),
                io.Float.Input("threshold_value", default=0.0, min=-10000.0, max=10000.0, step=0.001),
                io.Combo.Input("apply_to", options=APPLY_TO_CHOICES, default="both"),
                io.Int.Input("top_n", default=4, min=1, max=4096, tooltip="Features taken from the contrast."),
                io.Latent.Input("latent", optional=True, tooltip="For measuring the sets (a few steps each)."),
                io.Conditioning.Input("concept", optional=True),
                io.Conditioning.Input("neutral", optional=True),
                io.Clip.Input("clip", optional=True),
                io.String.Input("concept_prompts", default="", multiline=True, optional=True),
                io.String.Input("neutral_prompts", default="", multiline=True, optional=True),
                io.Int.Input("steps", default=4, min=1, max=10000, optional=True),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, optional=True),
                SAEScaleType.Input("scale", optional=True,
                                   tooltip="Feature means measured at this site, when no concept set is given."),
                io.Combo.Input("scope", options=SCOPES, default=SCOPES[0], optional=True,
                               tooltip="per token (SAeUron): each token where the feature exceeds the threshold. "
                                       "per image: every token of an image whose mean exceeds it, for concepts that "
                                       "cover the whole picture (a colour, a style), which a per-token erase leaves "
                                       "patchy."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001, optional=True,
                               tooltip="Erase from this part of the sampling on (0: every step, as SAeUron)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001, optional=True),
            ],
            outputs=[io.Model.Output(), io.String.Output(display_name="report")],
        )

    @classmethod
    def execute(cls, model, sae, site, block, tokens, features, multiplier, push_to, threshold, threshold_value,
                apply_to, top_n, latent=None, concept=None, neutral=None, clip=None, concept_prompts="",
                neutral_prompts="", steps=4, seed=0, scale=None, scope=SCOPES[0], start_percent=0.0,
                end_percent=1.0) -> io.NodeOutput:
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        per_image = scope == "per image"
        site, block = resolve_site(model, site, block, sae)
        spec = TapSpec(site, block, tokens, apply_to, start_percent, end_percent)  # checks the window before measuring
        sets = [optional_set("concept", concept, concept_prompts, clip), optional_set("neutral", neutral, neutral_prompts, clip)]
        measure_spec = TapSpec(site, block, tokens, apply_to="positive")
        stats = [None, None]
        if any(sets):
            if latent is None:
                raise ValueError("latent: measuring the concept and neutral sets needs a latent (e.g. an empty latent)")
            recorders = measure_sets(model, sae, measure_spec, [s for s in sets if s], latent, steps, seed, 1.0,
                                     "euler", "simple")
            filled = iter(recorders)
            stats = [next(filled).stats if s else None for s in sets]
        chosen, thresholds, targets, lines = erase_plan(sae, site, block, features, multiplier, push_to, threshold,
                                                        threshold_value, stats[0], stats[1], top_n, scale)
        patched, _ = attach_site(model, spec, EraseCallback(sae, chosen, thresholds, targets, per_image=per_image),
                                 d_in=sae.d_in)
        window = "" if spec.whole_sampling else f", {start_percent:g}-{end_percent:g} of the sampling"
        report = [f"SAE Erase Concept at {describe_site(site, block)}, {apply_to}, {scope}{window}:"] + lines
        if sets[0]:  # preview: what erasing removes on the concept's own first conditioning
            preview = EraseCallback(sae, chosen, thresholds, targets, record=True, per_image=per_image)
            tapped, _ = attach_site(model, dataclasses.replace(spec, apply_to="positive"), preview, d_in=sae.d_in)
            run_sampling(tapped, sets[0][0], None, latent, steps, seed, 1.0, "euler", "simple")
            report += ["", "on the concept's first prompt, "] + removal_report(preview, chosen, sae.labels)
        text = "\n".join(report)
        log.info("%s", text)
        return io.NodeOutput(patched, text)
