"""``SAEImageFeatureScan`` ("SAE Feature Scan (Image)"): which SAE features fire for a real image, and where.

img2img activations differ from text-to-image ones: the image is encoded by the VAE, noised to the sigma of
``percent`` (0 = pure noise, towards 1 = almost clean; read from the model's own sampling, shifts included)
with the seed's noise, and the model runs once there with a recording tap (positive pass only). Features,
table and heatmaps (over the image) are those of SAE Feature Scan.
"""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ...sae.scan_result import scan_result
from ..comfy_types import SAEScanType, SAEType
from ..sites.any_site import attach_site, describe_site, resolve_site
from ..sites.choice import site_inputs
from ..sites.sampling import run_once_at
from ..sites.tap import TapSpec
from .feature_measurements import remember_stats
from .recording import checked, heatmaps_for
from .scan_recorder import ScanRecorder

log = logging.getLogger(__name__)


def noise_sigma(model, percent: float) -> float:
    """The sigma at sampling ``percent`` for this model, capped at its largest sigma."""
    if not 0.0 <= percent < 1.0:
        raise ValueError(f"percent must be in [0, 1) (1 would be no noise at all), got {percent}")
    sampling = model.get_model_object("model_sampling")
    return min(float(sampling.percent_to_sigma(percent)), float(sampling.sigma_max))


class SAEImageFeatureScan(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEImageFeatureScan",
            display_name="SAE Feature Scan (Image)",
            category="sae_steering",
            description="Encode an image, noise it to one sigma, run the model once with a recording tap and list "
                        "the SAE features that fire, with heatmaps over the image.",
            inputs=[
                io.Model.Input("model"),
                SAEType.Input("sae"),
                io.Image.Input("image"),
                io.Vae.Input("vae"),
                io.Conditioning.Input("positive", tooltip="The prompt the model sees with the image (may be empty text)."),
                *site_inputs(),
                io.Float.Input("percent", default=0.5, min=0.0, max=0.999, step=0.001,
                               tooltip="Noise level as a sampling percent: 0 = pure noise, 0.9 = nearly the clean image."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff),
                io.Int.Input("top_n", default=16, min=1, max=4096),
            ],
            outputs=[
                io.String.Output(display_name="features"),
                io.Image.Output(display_name="heatmaps"),
                SAEScanType.Output(display_name="scan"),
            ],
        )

    @classmethod
    def execute(cls, model, sae, image, vae, positive, site, block, tokens, percent, seed, top_n) -> io.NodeOutput:
        site, block = resolve_site(model, site, block, sae)
        sigma = noise_sigma(model, percent)
        spec = TapSpec(site, block, tokens, apply_to="positive")
        recorder = ScanRecorder(sae)
        patched, _ = attach_site(model, spec, recorder, d_in=sae.d_in)
        latent = vae.encode(image[:, :, :, :3])
        run_once_at(patched, positive, latent, sigma, seed)
        checked(recorder, spec)
        meta = dict(site=site, block=block, tokens=tokens, percent=percent, sigma=round(sigma, 6), seed=seed,
                    recorded="positive")
        result = scan_result(recorder.stats, top_n, recorder.grid, None, meta)
        where = describe_site(site, block)
        remember_stats(sae, f"SAE Feature Scan (Image) at {where}", recorder.stats)
        log.info("SAE image feature scan at %s, sigma %.4g: top %s", where, sigma, result.features[:8])
        size = (image.shape[1], image.shape[2])
        return io.NodeOutput(result.table(sae.labels), heatmaps_for(result, sae, size, image), result)
