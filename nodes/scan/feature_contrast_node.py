"""``SAEFeatureContrast`` ("SAE Find Features"): the features that tell a concept from neutral prompts.

Each conditioning of the concept set (A) and of the neutral set (B) is sampled for a few steps on a
clone with a recording tap at the site (the positive pass only, as SAE Feature Scan records); the
statistics of each set are pooled and the features ranked by ``sae.contrast``. Outputs a line for the
steer node's ``features`` input, a bar chart and a table; optionally the top feature's label is written
into the labels file beside the SAE.
"""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ...sae.contrast import RANKINGS, contrast
from ..comfy_types import SAEType
from ..sites.any_site import describe_site, resolve_site
from ..sites.choice import site_inputs
from ..sites.sampling import sampling_inputs
from ..sites.tap import TapSpec
from .contrast_plot import contrast_plot
from .contrast_sets import conditioning_set, measure_sets, write_top_label


log = logging.getLogger(__name__)


class SAEFeatureContrast(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEFeatureContrast",
            display_name="SAE Find Features",
            category="sae_steering",
            description="Sample a concept set and a neutral set of prompts for a few steps and rank the SAE features "
                        "that fire more for the concept (normalised so always-on features do not dominate).",
            inputs=[
                io.Model.Input("model"),
                SAEType.Input("sae"),
                io.Latent.Input("latent"),
                *site_inputs(),
                *sampling_inputs(4, "Steps sampled per prompt; every one is recorded."),
                io.Int.Input("top_n", default=8, min=1, max=4096),
                io.Combo.Input("rank_by", options=list(RANKINGS), default=RANKINGS[0],
                               tooltip="normalised: mean difference over the tokens' spread; frequency: how much more "
                                       "often it fires; mean: raw difference of means."),
                io.Float.Input("strength", default=1.0, min=-10000.0, max=10000.0, step=0.01,
                               tooltip="Strengths in the features line = this × the feature's mean where it fires "
                                       "for the concept."),
                io.Conditioning.Input("concept", optional=True, tooltip="Set A (or write concept_prompts)."),
                io.Conditioning.Input("neutral", optional=True, tooltip="Set B (or write neutral_prompts)."),
                io.Clip.Input("clip", optional=True, tooltip="Encodes the prompts written below."),
                io.String.Input("concept_prompts", default="", multiline=True, optional=True,
                                tooltip="One prompt per line, added to set A."),
                io.String.Input("neutral_prompts", default="", multiline=True, optional=True,
                                tooltip="One prompt per line, added to set B."),
                io.String.Input("label", default="", optional=True,
                                tooltip="With write_label: the name written for the top feature."),
                io.Boolean.Input("write_label", default=False, optional=True,
                                 tooltip="Write label for the top feature into the labels file beside the SAE."),
            ],
            outputs=[
                io.String.Output(display_name="features"),
                io.Image.Output(display_name="chart"),
                io.String.Output(display_name="report"),
            ],
        )

    @classmethod
    def execute(cls, model, sae, latent, site, block, tokens, steps, seed, cfg, sampler_name, scheduler, top_n,
                rank_by, strength, concept=None, neutral=None, clip=None, concept_prompts="", neutral_prompts="",
                label="", write_label=False) -> io.NodeOutput:
        site, block = resolve_site(model, site, block, sae)
        if write_label and not (label or "").strip():
            raise ValueError("label: write_label is on but label is empty; name the concept")
        sets = [conditioning_set("concept", concept, concept_prompts, clip),
                conditioning_set("neutral", neutral, neutral_prompts, clip)]
        spec = TapSpec(site, block, tokens, apply_to="positive")
        a, b = measure_sets(model, sae, spec, sets, latent, steps, seed, cfg, sampler_name, scheduler)
        result = contrast(a.stats, b.stats, top_n, rank_by)
        report = result.table(sae.labels) + f"\n\nfeatures: {result.steer_line(strength)}"
        if write_label:
            path = write_top_label(sae, result.features[0], label)
            report += f"\nwrote label {label.strip()!r} for feature {result.features[0]} into {path}"
        log.info("SAE Find Features at %s:\n%s", describe_site(site, block), report)
        return io.NodeOutput(result.steer_line(strength), contrast_plot(result, sae.labels), report)
