"""``SAEActivationScale`` ("Measure Activation Scale"): measure a FLUX site's activations in a real short sampling.

The measurement rides on ``comfy.sample.sample`` of a clone carrying recording taps (the same
``attach_tap`` that steers); the taps fold each forward into streaming statistics and hand the
activations back untouched. Tokens are those ``SAEFluxSteer`` steers by default: the generated
image's tokens (text streams: all text tokens), both CFG halves, every step.
"""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ...sae.running_stats import ActivationStats
from ...sae.sae_stats import SAEStats
from ...sae.strength_guide import median_decoder_norm
from ..comfy_types import SAEScaleType, SAEType
from ..sites.choice import AUTO_SITE, resolve_site, site_inputs
from ..sites.flux_sites import flux_blocks, site_from_hook
from ..sites.sampling import run_sampling, sampling_inputs
from ..sites.tap import TapSpec, attach_tap
from .activation_scale import ActivationScale, SiteScale, site_key
from .scale_plot import blocks_plot, site_plot
from .scale_recorder import ScaleRecorder
from .scale_report import format_report

ALL_BLOCKS = "all blocks"
log = logging.getLogger(__name__)


def measured_sites(model, site: str, block: int, sae) -> list[tuple[str, int]]:
    """(site, block) pairs to record: one site, or every block output (image stream) for ``all blocks``.

    With ``all blocks`` an SAE is measured at its own site (from its metadata), added if it is not a block output.
    """
    if site != ALL_BLOCKS:
        if site == AUTO_SITE and sae is None:
            raise ValueError("site is 'auto' (taken from the SAE's metadata) but no sae is connected: "
                             "connect one or choose a site")
        return [resolve_site(site, block, sae)]
    diffusion_model = flux_blocks(model)
    sites = [("double.img.out", i) for i in range(len(diffusion_model.double_blocks))]
    sites += [("single.out", i) for i in range(len(diffusion_model.single_blocks))]
    if sae is not None:
        own = site_from_hook(sae.hook)
        if own is None:
            raise ValueError(f"site is 'all blocks' and an SAE is connected, but the SAE's metadata names no FLUX "
                             f"site (hook={sae.hook!r}): choose the SAE's site and block to measure it")
        if own not in sites:
            sites.append(own)
    return sites


def measure(model, positive, negative, latent, site, block, steps, seed, cfg, sampler_name, scheduler,
            sae=None) -> ActivationScale:
    """Sample once on a clone with one recording tap per site; ``model`` itself is never patched."""
    targets = measured_sites(model, site, block, sae)
    sae_site = targets[0] if site != ALL_BLOCKS else (site_from_hook(sae.hook) if sae is not None else None)
    patched, scales = model, []
    for target in targets:
        with_sae = sae is not None and target == sae_site
        scale = SiteScale(*target, ActivationStats(), SAEStats(sae.d_sae, sae.d_in) if with_sae else None)
        recorder = ScaleRecorder(site_key(*target), scale.stats, sae if with_sae else None, scale.sae_stats)
        patched, _ = attach_tap(patched, TapSpec(*target), recorder, d_in=sae.d_in if with_sae else None)
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
            description="Run a short real sampling and measure the activations at a FLUX site (or every block "
                        "output): their scale, quantiles, token norms, and an SAE's firing and reconstruction. "
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
            profile = [(f"{'D' if s.site.startswith('double') else 'S'}{s.block}", s.summary()["norm_mean"],
                        s.stats.norm_quantiles([0.99])[0])
                       for s in scale.sites.values() if s.site in ("double.img.out", "single.out")]
            plot = blocks_plot(profile)
        else:
            key, only = next(iter(scale.sites.items()))
            plot = site_plot(key, only.stats)
        return io.NodeOutput(scale, report, plot)
