"""One way for every site node to reach a site of any model family the pack hooks.

A node resolves its ``site``/``block`` inputs with ``resolve_site`` (``auto``: the SAE's hook read in the
connected model's family) and attaches its callback with ``attach_site``, which picks the family's own
tap. The request is a ``TapSpec`` (site, block, tokens, apply_to, step window, track_percent): its fields
mean the same for every family, and each family's ``attach`` turns it into its own tap. Families are the
rows of ``FAMILIES``:

| field           | what it gives                                                                      |
|-----------------|------------------------------------------------------------------------------------|
| name            | the site table's name in messages                                                  |
| models          | the model families (``model_families.model_family``) it hooks                      |
| choices         | the names it adds to the ``site`` input (every name the family can have)           |
| uses_block      | whether the ``block`` input counts (FLUX, DiT: a block index; UNet: the name is the block) |
| owns            | site name -> whether it is this family's                                           |
| fits            | MODEL -> whether this family's taps can hook it                                   |
| from_hook       | an SAE's hook name -> (site, block), None when it names none of this family's     |
| attach          | (model, TapSpec, callback, d_in) -> (patched clone, tap): checks site, block, width |
| model_sites     | MODEL -> its sites, written out for error messages                                 |
| block_outputs   | MODEL -> [(site, block, short label)] for Measure Activation Scale's ``all blocks`` |

Rows: FLUX (FLUX.1, FLUX.2, Chroma), UNet (SD1.5, SDXL), DiT (SD3/3.5, Qwen-Image, Lumina2, Z-Image, Wan 2.1/2.2).
A new family is one more row. Site names never collide between rows; hook names do (``transformer_blocks.18``
is FLUX's double block 18 and SD3's / Qwen's block 18), so ``auto`` reads the hook in the model's family.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .dit_sites import (FAMILY_TABLE as DIT_TABLE, READS as DIT_READS, dit_family, dit_site_choices,
                        dit_site_from_hook, family_sites, parse_dit_choice)
from .dit_tap import attach_dit_tap
from .flux_sites import SITE_NAMES, SITES, site_from_hook
from .model_families import DIT_FAMILIES, FLUX_FAMILIES, describe_model, model_family, unsupported_family
from .tap import TapCallback, TapSpec, attach_tap
from .unet_sites import (UNET_FAMILIES, UNET_SITE_CHOICES, parse_unet_choice, unet_choice, unet_site_from_hook,
                         unet_sites)
from .unet_tap import UNetTapSpec, attach_unet_tap

AUTO_SITE = "auto"
Sites = list[tuple[str, int, str]]  # (site, block, short label)


@dataclass(frozen=True)
class SiteFamily:
    name: str
    models: tuple[str, ...]
    choices: tuple[str, ...]
    uses_block: bool
    owns: Callable[[str], bool]
    fits: Callable[[object], bool]
    from_hook: Callable[[Optional[str]], Optional[tuple[str, int]]]
    attach: Callable[..., tuple]
    model_sites: Callable[[object], str]
    block_outputs: Optional[Callable[[object], Sites]] = None
    profile_axis: str = "block"     # the x axis of the ``all blocks`` plot


# -- FLUX.1, FLUX.2, Chroma: double and single blocks (nodes/sites/flux_sites.py, tap.py) ---------------------
def _flux_fits(model) -> bool:
    diffusion_model = model.get_model_object("diffusion_model")
    return model_family(model) in (None, *FLUX_FAMILIES) and hasattr(diffusion_model, "double_blocks") \
        and hasattr(diffusion_model, "single_blocks")


def _flux_sites(model) -> str:
    diffusion_model = model.get_model_object("diffusion_model")
    return (f"{', '.join(SITE_NAMES)} (blocks: double 0-{len(diffusion_model.double_blocks) - 1}, "
            f"single 0-{len(diffusion_model.single_blocks) - 1})")


def _flux_outputs(model) -> Sites:
    diffusion_model = model.get_model_object("diffusion_model")
    return ([("double.img.out", i, f"D{i}") for i in range(len(diffusion_model.double_blocks))]
            + [("single.out", i, f"S{i}") for i in range(len(diffusion_model.single_blocks))])


# -- SD1.5 / SDXL: spatial transformers by diffusers name (nodes/sites/unet_sites.py, unet_tap.py) ---------
def _unet_fits(model) -> bool:
    return model_family(model) in UNET_FAMILIES and hasattr(model.get_model_object("diffusion_model"), "input_blocks")


def _unet_from_hook(hook):
    found = unet_site_from_hook(hook)
    return None if found is None else (unet_choice(*found), 0)


def _unet_attach(model, spec: TapSpec, callback: TapCallback, d_in: int | None = None):
    name, reads = parse_unet_choice(spec.site)  # every UNet token is an image position: image and all agree
    if spec.tokens == "text":  # the prompt reaches a spatial transformer only through cross-attention
        raise ValueError(f"tokens 'text': the UNet site {spec.site} has image positions only (the prompt enters by "
                         "cross-attention); choose tokens 'image'")
    unet_spec = UNetTapSpec(name, reads, spec.apply_to, spec.start_percent, spec.end_percent,
                            track_percent=spec.track_percent)
    return attach_unet_tap(model, unet_spec, callback, d_in)


def _unet_sites(model) -> str:
    return f"{', '.join(unet_sites(model.get_model_object('diffusion_model')))} (each also as .update)"


def _unet_short(name: str) -> str:
    """``down_blocks.1.attentions.0`` -> ``D1.0``, ``mid_block.attentions.0`` -> ``M``, ``up_blocks.0.attentions.2`` -> ``U0.2``."""
    if name.startswith("mid_block"):
        return "M"
    parts = name.split(".")
    return f"{parts[0][0].upper()}{parts[1]}.{parts[3]}"


def _unet_outputs(model) -> Sites:
    return [(name, 0, _unet_short(name)) for name in unet_sites(model.get_model_object("diffusion_model"))]


# -- SD3/3.5, Qwen-Image, Lumina2 / Z-Image, Wan 2.1 / 2.2: block lists by diffusers name (dit_sites.py, dit_tap.py)
def _dit_fits(model) -> bool:
    family = DIT_TABLE.get(model_family(model))
    return family is not None and hasattr(model.get_model_object("diffusion_model"), family.blocks)


def _dit_block_count(model) -> int:
    return len(getattr(model.get_model_object("diffusion_model"), dit_family(model).blocks))


def _dit_sites(model) -> str:
    names = [f"{name}.{reads}" for name in family_sites(dit_family(model)) for reads in DIT_READS]
    return f"{', '.join(names)} (blocks 0-{_dit_block_count(model) - 1})"


def _dit_outputs(model) -> Sites:
    """The main stream's output of every block (SD3 / Qwen: the image stream; Lumina: the joint one; Wan: the video)."""
    site = f"{family_sites(dit_family(model))[0]}.out"
    return [(site, i, str(i)) for i in range(_dit_block_count(model))]


FLUX = SiteFamily(
    name="FLUX", models=FLUX_FAMILIES, choices=tuple(SITE_NAMES), uses_block=True, owns=SITES.__contains__,
    fits=_flux_fits, from_hook=site_from_hook, attach=attach_tap, model_sites=_flux_sites,
    block_outputs=_flux_outputs, profile_axis="block (D = double, S = single)")
UNET = SiteFamily(
    name="UNet (SD1.5/SDXL)", models=tuple(UNET_FAMILIES), choices=tuple(UNET_SITE_CHOICES), uses_block=False,
    owns=lambda site: parse_unet_choice(site) is not None, fits=_unet_fits, from_hook=_unet_from_hook,
    attach=_unet_attach, model_sites=_unet_sites, block_outputs=_unet_outputs,
    profile_axis="spatial transformer (D = down, M = mid, U = up; level.index)")
DIT = SiteFamily(
    name="DiT", models=DIT_FAMILIES, choices=tuple(dit_site_choices()), uses_block=True,
    owns=lambda site: parse_dit_choice(site) is not None, fits=_dit_fits, from_hook=dit_site_from_hook,
    attach=attach_dit_tap, model_sites=_dit_sites, block_outputs=_dit_outputs)
FAMILIES: tuple[SiteFamily, ...] = (FLUX, UNET, DIT)


def site_choices(families: tuple[SiteFamily, ...] = FAMILIES) -> list[str]:
    """Every site name of ``families``, in table order (the ``site`` input's options before ``auto``)."""
    return [name for family in families for name in family.choices]


def family_of_site(site: str) -> SiteFamily | None:
    return next((family for family in FAMILIES if family.owns(site)), None)


def family_of_model(model) -> SiteFamily:
    """The family whose taps hook ``model``; one line naming its family and the hooked ones otherwise."""
    for family in FAMILIES:
        if family.fits(model):
            return family
    raise unsupported_family(model, tuple(name for family in FAMILIES for name in family.models))


def resolve_in(family: SiteFamily, site: str, block: int, sae, model=None) -> tuple[str, int]:
    """(site, block) within ``family``: ``auto`` from the SAE's hook; block 0 where the name is the block."""
    if site == AUTO_SITE:
        if sae is None:
            raise ValueError("site is 'auto' (taken from the SAE's metadata) but no sae is connected: "
                             "connect one or choose a site")
        found = family.from_hook(sae.hook)
        if found is None:
            sites = family.model_sites(model) if model is not None else ", ".join(family.choices)
            raise ValueError(f"site is 'auto' but the SAE's metadata names no {family.name} site (hook={sae.hook!r}); "
                             f"choose one of {sites} and the block")
        site, block = found
    owner = family_of_site(site)
    return site, (block if owner is None or owner.uses_block else 0)


def resolve_site(model, site: str, block: int, sae) -> tuple[str, int]:
    """The node's (site, block) in the connected model's family (``auto``: from the SAE's hook). A site of
    another family is refused here, before a node reads anything else about it (a scale, a strength unit)."""
    family = family_of_model(model)
    site, block = resolve_in(family, site, block, sae, model)
    _check_owner(model, family, site)
    return site, block


def attach_site(model, spec: TapSpec, callback: TapCallback, d_in: int | None = None):
    """A clone of ``model`` with ``callback`` tapping ``spec.site`` through its family's tap; ``model`` is
    untouched. A site of another family, or none, is refused naming the model's family and its sites."""
    family = family_of_model(model)
    _check_owner(model, family, spec.site)
    return family.attach(model, spec, callback, d_in)


def _check_owner(model, family: SiteFamily, site: str):
    owner = family_of_site(site)
    if owner is not family:
        kind = f"a {owner.name} site" if owner is not None else "no site of any family the pack hooks"
        raise ValueError(f"site {site!r} is {kind}; this model (family: {describe_model(model)}) has the "
                         f"{family.name} sites {family.model_sites(model)}")


def block_outputs(model, sae=None) -> tuple[Sites, tuple[str, int] | None]:
    """``all blocks``: the model's block outputs, and the SAE's own site (from its hook) when an SAE is given;
    that site is added at the end (label "") when it is not a block output."""
    family = family_of_model(model)
    if family.block_outputs is None:
        raise ValueError(f"site 'all blocks' is not available for {family.name} models; choose a site")
    sites = family.block_outputs(model)
    own = None
    if sae is not None:
        own = family.from_hook(sae.hook)
        if own is None:
            raise ValueError(f"site is 'all blocks' and an SAE is connected, but the SAE's metadata names no "
                             f"{family.name} site (hook={sae.hook!r}): choose the SAE's site and block to measure it")
        if own not in [(site, block) for site, block, _ in sites]:
            sites.append((*own, ""))
    return sites, own


def profile_axis(model) -> str:
    return family_of_model(model).profile_axis


def site_key(site: str, block: int) -> str:
    """The name a measured site goes by: ``double.img.out[18]``, ``transformer_blocks.update[18]`` (DiT); a site whose
    name is its block (UNet) goes by the name."""
    owner = family_of_site(site)
    return site if owner is not None and not owner.uses_block else f"{site}[{block}]"


def describe_site(site: str, block: int) -> str:
    """For logs and reports: ``double.img.out block 18``, ``up_blocks.0.attentions.1``."""
    owner = family_of_site(site)
    return site if owner is not None and not owner.uses_block else f"{site} block {block}"
