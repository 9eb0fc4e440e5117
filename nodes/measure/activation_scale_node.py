"""``SAEActivationScale`` ("Measure Activation Scale"): measure a site's activations in a real short sampling.

The measurement rides on ``comfy.sample.sample`` of a clone carrying recording taps (the same
``attach_site`` that steers, so FLUX blocks, SD1.5/SDXL spatial transformers and DiT blocks alike); the
taps fold each forward into streaming statistics and hand the activations back untouched. Tokens are those
``SAESteer`` steers by default: the generated image's tokens (text streams: all text tokens; UNet: the
level's h x w positions; Wan: frames x h x w), both CFG halves, every step.
"""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ...sae.running_stats import ActivationStats
from ...sae.sae_stats import SAEStats
from ...sae.strength_guide import median_decoder_norm
from ..comfy_types import SAEScaleType, SAEType
from ..sites.any_site import attach_site, block_outputs, profile_axis, resolve_site, site_key
from ..sites.choice import site_inputs
from ..sites.sampling import run_sampling, sampling_inputs
from ..sites.tap import TapSpec
from .activation_scale import ActivationScale, SiteScale
from .scale_plot import blocks_plot, site_plot
from .scale_recorder import ScaleRecorder
from .scale_report import format_report

ALL_BLOCKS = "all blocks"
log = logging.getLogger(__name__)


def measured_sites(model, site: str, block: int, sae) -> tuple[list[tuple[str, int, str]], tuple[str, int] | None]:
    """((site, block, profile label) to record, the site the SAE is measured at or None): one site, or every
    block output of the model's family for ``all blocks`` (FLUX: image streams of the double blocks, then
    the single blocks; UNet: every spatial transformer's output), the SAE at its own site (from its
    metadata), added when it is not a block output."""
    if site == ALL_BLOCKS:
        return block_outputs(model, sae)
    target = resolve_site(model, site, block, sae)
    return [(*target, "")], target if sae is not None else None


def measure(model, positive, negative, latent, site, block, steps, seed, cfg, sampler_name, scheduler,
            sae=None) -> ActivationScale:
    """Sample once on a clone with one recording tap per site; ``model`` itself is never patched."""
    targets, sae_site = measured_sites(model, site, block, sae)
    patched, scales = model, []
    for target, target_block, label in targets:
        with_sae = (target, target_block) == sae_site
        scale = SiteScale(target, target_block, ActivationStats(),
                          SAEStats(sae.d_sae, sae.d_in) if with_sae else None, label)
        recorder = ScaleRecorder(site_key(target, target_block), scale.stats, sae if with_sae else None,
                                 scale.sae_stats)
        patched, _ = attach_site(patched, TapSpec(target, target_block), recorder, d_in=sae.d_in if with_sae else None)
        scales.append(scale)
    run_sampling(patched, positive, negative, latent, steps, seed, cfg, sampler_name, scheduler)
    settings = dict(site=site, steps=steps, seed=seed, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler)
    return ActivationScale(scales, settings)


class SAEActivationScale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEActivationScale",
            display_name="Measure Activation Scale",
            category="sae_steering",
            description="Run a short real sampling and measure the activations at a site of any hooked model "
                        "family (FLUX, SDXL/SD1.5, SD3, Qwen-Image, Lumina2/Z-Image, Wan), or at every block "
                        "output: their scale, quantiles, token norms, and an SAE's firing and reconstruction. "
                        "Choose steering strengths against these numbers.",
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Without it the negative pass (cfg > 1) sees the positive conditioning."),
                io.Latent.Input("latent"),
                *site_inputs(extra_sites=(ALL_BLOCKS,), with_tokens=False),
                *sampling_inputs(4, "A few steps are enough to measure."),
                SAEType.Input("sae", optional=True,
                              tooltip="Also measure this SAE at the site: FVU, cosine, per-feature firing."),
            ],
            outputs=[
                SAEScaleType.Output(display_name="scale"),
                io.String.Output(display_name="report"),
                io.Image.Output(display_name="plot"),
            ],
        )

    @classmethod
    def execute(cls, model, positive, latent, site, block, steps, seed, cfg, sampler_name, scheduler,
                negative=None, sae=None) -> io.NodeOutput:
        scale = measure(model, positive, negative, latent, site, block, steps, seed, cfg, sampler_name,
                        scheduler, sae)
        report = format_report(scale, median_decoder_norm(sae) if sae is not None else None)
        log.info("%s", report)
        if site == ALL_BLOCKS:
            profile = [(s.label, s.summary()["norm_mean"], s.stats.norm_quantiles([0.99])[0])
                       for s in scale.sites.values() if s.label]
            plot = blocks_plot(profile, profile_axis(model))
        else:
            key, only = next(iter(scale.sites.items()))
            plot = site_plot(key, only.stats)
        return io.NodeOutput(scale, report, plot)
