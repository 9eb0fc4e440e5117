"""The SD1.5 / SDXL UNet activation sites: each spatial transformer, named as diffusers names it.

| site (diffusers)              | ComfyUI v0.8.0 module (``UNetModel``)                 |
|-------------------------------|-------------------------------------------------------|
| ``down_blocks.L.attentions.J`` | ``input_blocks[n].1``: level L, J-th res block of it  |
| ``mid_block.attentions.0``     | ``middle_block.1``                                    |
| ``up_blocks.L.attentions.J``   | ``output_blocks[n].1``: level L from the lowest resolution |

A site reads the module's output (``reads = "out"``) or its residual update, output − input (``"update"``,
sdxl-unbox's convention; the edit of the update is added to the output). Tokens are the module's
spatial positions (h × w of that level), channels the module's width. The table is read off the model's
own blocks (levels end at a ``Downsample`` / ``Upsample``), so every UNet config gets its true names.
"""
from __future__ import annotations

import re

from .model_families import model_family

UNET_FAMILIES = ("SDXL", "SD1.5")
READS = ("out", "update")
UPDATE_MARK = ".update"
_HOOK = re.compile(r"(down_blocks\.\d+\.attentions\.\d+|mid_block\.attentions\.0|up_blocks\.\d+\.attentions\.\d+)"
                   r"(\.update)?$")
# every spatial transformer of SD1.5 and SDXL by its diffusers name, each also as .update (a model has a subset)
UNET_SITE_NAMES = ([f"down_blocks.{level}.attentions.{i}" for level in range(3) for i in range(2)]
                   + ["mid_block.attentions.0"]
                   + [f"up_blocks.{level}.attentions.{i}" for level in range(4) for i in range(3)])
UNET_SITE_CHOICES = [name + suffix for name in UNET_SITE_NAMES for suffix in ("", UPDATE_MARK)]


def _is(module, name: str) -> bool:
    return type(module).__name__ == name


def unet_sites(diffusion_model) -> dict[str, str]:
    """diffusers name -> ComfyUI module path of every spatial transformer of a ``UNetModel``."""
    sites = {}
    level, index = 0, 0
    for n, block in enumerate(diffusion_model.input_blocks):
        if any(_is(m, "Downsample") for m in block):
            level, index = level + 1, 0
            continue
        if any(_is(m, "ResBlock") for m in block):
            if len(block) > 1 and _is(block[1], "SpatialTransformer"):
                sites[f"down_blocks.{level}.attentions.{index}"] = f"input_blocks.{n}.1"
            index += 1
    if len(diffusion_model.middle_block) > 1 and _is(diffusion_model.middle_block[1], "SpatialTransformer"):
        sites["mid_block.attentions.0"] = "middle_block.1"
    level, index = 0, 0
    for n, block in enumerate(diffusion_model.output_blocks):
        if len(block) > 1 and _is(block[1], "SpatialTransformer"):
            sites[f"up_blocks.{level}.attentions.{index}"] = f"output_blocks.{n}.1"
        index += 1
        if any(_is(m, "Upsample") for m in block):
            level, index = level + 1, 0
    return sites


def unet_site_from_hook(hook: str | None) -> tuple[str, str] | None:
    """``"unet.up_blocks.0.attentions.1.update"`` -> ``("up_blocks.0.attentions.1", "update")``; None otherwise."""
    if not hook:
        return None
    found = _HOOK.search(hook.strip())
    if found is None or (found.start() > 0 and hook.strip()[found.start() - 1] not in "."):
        return None
    return found.group(1), "update" if found.group(2) else "out"


def unet_choice(name: str, reads: str) -> str:
    """The site-input spelling of (module, reads): ``up_blocks.0.attentions.1`` or ``up_blocks.0.attentions.1.update``."""
    return name + (UPDATE_MARK if reads == "update" else "")


def parse_unet_choice(site: str) -> tuple[str, str] | None:
    """``"mid_block.attentions.0.update"`` -> ``("mid_block.attentions.0", "update")``: exactly a site-input
    spelling (no prefix), else None."""
    found = _HOOK.fullmatch(site or "")
    return None if found is None else (found.group(1), "update" if found.group(2) else "out")


def check_unet_site(model, site: str, reads: str, d_in: int | None = None):
    """The spatial transformer module at ``site`` of a SD1.5/SDXL MODEL; one-line errors for anything else."""
    family = model_family(model)
    diffusion_model = model.get_model_object("diffusion_model")
    if family not in UNET_FAMILIES or not hasattr(diffusion_model, "input_blocks"):
        raise ValueError(f"UNet sites need an SD1.5 or SDXL model; this one is {family or type(diffusion_model).__name__}")
    if reads not in READS:
        raise ValueError(f"reads {reads!r} is not one of {', '.join(READS)}")
    sites = unet_sites(diffusion_model)
    if site not in sites:
        raise ValueError(f"site {site!r} is not in this {family} model; it has {', '.join(sites)}")
    module = diffusion_model.get_submodule(sites[site])
    if d_in is not None and d_in != module.in_channels:
        raise ValueError(f"the SAE reads {d_in}-d activations but {site} of this {family} model has "
                         f"{module.in_channels} channels: load an SAE trained at this site")
    return sites[site]
