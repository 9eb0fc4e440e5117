"""What the site nodes share about choosing a site: the site/block/tokens inputs, ``auto`` read from the
SAE's metadata, and strengths in units of a measured scale at that site. Which family a site belongs to,
and its tap, is ``any_site``'s."""
from __future__ import annotations

from comfy_api.latest import io

from ..steer.feature_spec import with_value
from .any_site import AUTO_SITE, FLUX, resolve_in, site_choices, site_key
from .flux_sites import TOKEN_CHOICES

STRENGTH_UNITS = ["absolute", "× feature mean", "× token norm"]
# the block input's range: the longest block list of a hooked family is Qwen-Image's 60 (FLUX.1: 19 double and
# 38 single, FLUX.2 dev: 48 single, Wan 14B: 40); the connected model checks its own range
MAX_BLOCK = 63


def resolve_site(site: str, block: int, sae) -> tuple[str, int]:
    """FLUX sites only (SAE Steer FLUX, Harvest): ``auto`` takes site and block from the SAE's metadata."""
    return resolve_in(FLUX, site, block, sae)


def in_units(features: list[tuple[int, float]], unit: str, scale, site: str, block: int, sae,
             mode: str) -> list[tuple[int, float]]:
    """Absolute strengths from strengths in ``unit``, read from the measured ``scale`` at (site, block)."""
    if unit not in STRENGTH_UNITS:
        raise ValueError(f"strength_unit {unit!r} is not one of {', '.join(STRENGTH_UNITS)}")
    if unit == "absolute":
        return features
    if mode == "scale":
        raise ValueError(f"mode 'scale' multiplies features: its strength is a factor, use strength_unit 'absolute' "
                         f"(got {unit!r})")
    if scale is None and unit == "× feature mean" and getattr(sae, "feature_means", None) is not None:
        means = sae.feature_means  # shipped with the SAE (sdxl-unbox mean.pt): no measuring needed
        return [with_value(e, e[1] * float(means[e[0]])) for e in features]
    if scale is None:
        raise ValueError(f"strength_unit {unit!r} needs the scale input: connect Measure Activation Scale's "
                         f"scale measured at {site_key(site, block)}")
    if unit == "× token norm":
        norm = scale.token_norm(site, block, unit)
        return [with_value(e, e[1] * norm) for e in features]
    # a strength of 0 (set red to 0, erase) is 0 in any unit: it needs no mean, so it may name a feature that
    # never fired on the measured prompts
    return [e if e[1] == 0 else with_value(e, e[1] * scale.feature_mean(site, block, e[0], sae.d_sae, unit))
            for e in features]


def site_input(choices: list[str] | None = None, extra_sites: tuple[str, ...] = ()):
    """The ``site`` combo: ``choices`` (default: every family's sites), ``auto``, then ``extra_sites``."""
    tooltip = ("Where the SAE reads and writes: a FLUX site (block below), an SD1.5/SDXL spatial transformer by "
               "its diffusers name, or a DiT block list (SD3/Qwen-Image transformer_blocks, Lumina2/Z-Image layers, "
               "Wan blocks; block below); .update = output minus input. docs/sites.md. auto = from the SAE's metadata."
               if choices is None else
               "Where the SAE reads and writes (diffusers names in docs/sites.md); auto = from the SAE's metadata.")
    options = (site_choices() if choices is None else list(choices)) + [AUTO_SITE, *extra_sites]
    return io.Combo.Input("site", options=options, default="double.img.out", tooltip=tooltip)


def site_inputs(extra_sites: tuple[str, ...] = (), with_tokens: bool = True, choices: list[str] | None = None) -> list:
    """The site/block/tokens inputs every site node shares (``extra_sites`` add site choices; ``choices``
    narrows the sites, e.g. to FLUX's for SAE Steer FLUX)."""
    inputs = [
        site_input(choices, extra_sites),
        io.Int.Input("block", default=0, min=0, max=MAX_BLOCK,
                     tooltip="Block index within its kind (double 0-18, single 0-37 on FLUX.1) or list (Qwen-Image "
                             "0-59, SD3.5 Large 0-37, Wan 14B 0-39); UNet sites name their block and ignore this."),
    ]
    if with_tokens:
        inputs.append(io.Combo.Input("tokens", options=TOKEN_CHOICES, default="image",
                                     tooltip="Single-block and Lumina sites: which tokens. Image streams: 'all' also "
                                             "takes reference tokens (Kontext, Qwen-Image Edit, Wan's extra frames)."))
    return inputs
