"""``SAEFeatureScan`` ("SAE Feature Scan"): which SAE features fire for a prompt, and where.

It runs one real sampling on a clone of the model with a recording tap at the site (the tap
returns None: the image is exactly what plain sampling gives), ranks the features and draws
a heatmap for each of the top ones. Only the positive half of classifier-free guidance is
recorded (``apply_to="positive"``): the negative prompt's features are not the prompt's.
With ``contrast`` a second sampling (same seed, latent, negative) runs with ``contrast`` as
the positive prompt, and features are ranked by how much more they fire for ``positive``.
At a video site (Wan: frames x h x w tokens) each feature's heatmap is its frames tiled on one sheet.
"""
from __future__ import annotations

import logging

import comfy.utils
from comfy_api.latest import io

from ...sae.scan_result import scan_result
from ..comfy_types import SAEScanType, SAEType
from ..sites.any_site import describe_site, resolve_site
from ..sites.choice import site_inputs
from ..sites.model_families import latent_scale
from ..sites.sampling import sampling_inputs
from ..sites.tap import TapSpec
from .feature_measurements import remember_stats
from .recording import record, heatmaps_for


log = logging.getLogger(__name__)


class SAEFeatureScan(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEFeatureScan",
            display_name="SAE Feature Scan",
            category="sae_steering",
            description="Sample once with a recording tap and list the SAE features that fire most, with heatmaps.",
            inputs=[
                io.Model.Input("model"),
                SAEType.Input("sae"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Only used at cfg > 1 (the positive serves when absent). Never recorded."),
                io.Latent.Input("latent"),
                *site_inputs(),
                *sampling_inputs(8, "Every step is recorded; a few steps are enough to find features.",
                                 control_after_generate=True),
                io.Int.Input("top_n", default=16, min=1, max=4096),
                io.Conditioning.Input("contrast", optional=True,
                                      tooltip="Rank by how much more features fire for positive than for this prompt "
                                              "(a second sampling)."),
                io.Image.Input("image", optional=True,
                               tooltip="Draw the heatmaps over this image (its first frame; at a video site each "
                                       "tile over the frame of the same time)."),
            ],
            outputs=[
                io.String.Output(display_name="features"),
                io.Image.Output(display_name="heatmaps"),
                SAEScanType.Output(display_name="scan"),
            ],
        )

    @classmethod
    def execute(cls, model, sae, positive, latent, site, block, tokens, steps, seed, cfg, sampler_name,
                scheduler, top_n, negative=None, contrast=None, image=None) -> io.NodeOutput:
        site, block = resolve_site(model, site, block, sae)
        spec = TapSpec(site, block, tokens, apply_to="positive")
        runs = 1 if contrast is None else 2
        progress = comfy.utils.ProgressBar(steps * runs)
        args = (latent, steps, seed, cfg, sampler_name, scheduler, progress)
        main = record(model, sae, spec, positive, negative, *args, done=0)
        other = None if contrast is None else record(model, sae, spec, contrast, negative, *args, done=steps)
        meta = dict(site=site, block=block, tokens=tokens, steps=steps, seed=seed, cfg=cfg, recorded="positive")
        result = scan_result(main.stats, top_n, main.grid, None if other is None else other.stats, meta)
        where = describe_site(site, block)
        remember_stats(sae, f"SAE Feature Scan at {where}", main.stats)  # for the feature picker
        log.info("SAE feature scan at %s: %d forwards, top %s", where, main.forwards, result.features[:8])

        if image is not None:
            size, backdrop = (image.shape[1], image.shape[2]), image
        else:
            samples, scale = latent["samples"], latent_scale(model)  # drawn at the size the VAE would decode
            size, backdrop = (samples.shape[-2] * scale, samples.shape[-1] * scale), None
        return io.NodeOutput(result.table(sae.labels), heatmaps_for(result, sae, size, backdrop), result)
