"""The DiT activation sites (SD3/3.5, Qwen-Image, Lumina2 / Z-Image, Wan 2.1 / 2.2): each transformer block by
its diffusers module name, read as its output or its residual update.

- SD3/3.5: ``joint_blocks[N]`` (diffusers ``transformer_blocks.N``), an image stream ``x`` and a context stream;
- Qwen-Image: ``transformer_blocks[N]`` (same name in diffusers), an image stream and a text stream;
- Lumina2, Z-Image: ``layers[N]`` (same name), one stream: cat(caption, image);
- Wan 2.1, Wan 2.2: ``blocks[N]`` (same name), the video's tokens (frames × h × w).
SD3, Qwen-Image and Wan are hooked by ``patches_replace["dit"][("double_block", N)]``; Lumina2 / Z-Image, which
have no block patch point, by a forward hook on ``layers[N]`` that lives for one forward.

A site is a stream of a block list: ``transformer_blocks`` (the image stream), ``transformer_blocks.context``
(SD3's / Qwen's text stream), ``layers`` (Lumina's joint stream; ``tokens`` picks image, text or all),
``blocks`` (Wan's video tokens). With a block index N it is the diffusers module ``<list>.N``. It reads the
block's output (``out``) or its residual update, output − input (``update``, sdxl-unbox's convention: the
edit of the update is added to the output). The node's site input names both: ``<site>.<reads>``, e.g.
``transformer_blocks.update`` with block 12, so 60 Qwen blocks need no 120 choices.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .flux_sites import Site
from .model_families import DIT_FAMILIES, model_family

READS = ("out", "update")
CONTEXT = ".context"  # the text stream of a two-stream block (diffusers' ``*_context`` modules)


@dataclass(frozen=True)
class DiTFamily:
    name: str
    blocks: str            # attribute of ComfyUI's diffusion model holding the block list
    diffusers: str         # the diffusers module list the same blocks are in
    streams: tuple         # Site.stream of each site: "img" and "txt", "joint", or "img" alone
    hook: str              # "block": patches_replace["dit"]["double_block"]; "module": forward hook on the block
    width: str             # attribute of the diffusion model with the blocks' width
    video: bool = False    # the image grid carries frames: (frames, h, w)


_SD3 = DiTFamily("SD3/3.5", "joint_blocks", "transformer_blocks", ("img", "txt"), "block", "hidden_size")
_QWEN = DiTFamily("Qwen-Image", "transformer_blocks", "transformer_blocks", ("img", "txt"), "block", "inner_dim")
_LUMINA = DiTFamily("Lumina2", "layers", "layers", ("joint",), "module", "dim")
_WAN = DiTFamily("Wan 2.1", "blocks", "blocks", ("img",), "block", "dim", video=True)
FAMILY_TABLE: dict[str, DiTFamily] = {
    "SD3/3.5": _SD3, "Qwen-Image": _QWEN, "Lumina2": _LUMINA, "Z-Image": _LUMINA, "Wan 2.1": _WAN, "Wan 2.2": _WAN,
}
assert set(FAMILY_TABLE) == set(DIT_FAMILIES)


def _site_name(family: DiTFamily, stream: str) -> str:
    return family.diffusers + (CONTEXT if stream == "txt" else "")


def family_sites(family: DiTFamily) -> list[str]:
    """The site names (streams) of a family, e.g. ``["transformer_blocks", "transformer_blocks.context"]``."""
    return [_site_name(family, stream) for stream in family.streams]


def dit_site_choices() -> list[str]:
    """Every ``<site>.<reads>`` of every DiT family, for a site combo (each model has a subset: checked at run)."""
    names = dict.fromkeys(name for family in FAMILY_TABLE.values() for name in family_sites(family))
    return [f"{name}.{reads}" for name in names for reads in READS]


def parse_dit_choice(choice: str) -> tuple[str, str] | None:
    """``"transformer_blocks.context.update"`` -> ``("transformer_blocks.context", "update")``; None otherwise."""
    name, _, reads = (choice or "").rpartition(".")
    return (name, reads) if f"{name}.{reads}" in dit_site_choices() else None


# diffusers hook names: a DiT block list, a block index, and the update marks of the FLUX/sdxl-unbox names;
# any prefix of plain names (transformer., unet., model.diffusion_model.) but none with an index in it,
# so a UNet's ``up_blocks.1.attentions.0.transformer_blocks.0`` is not a DiT block.
_HOOK = re.compile(r"^(?:[A-Za-z_]\w*\.)*?(transformer_blocks|layers|blocks)\.(\d+)(\.update|\.update_context)?$")
_OWN = re.compile(r"^(.+\.(?:out|update))[.:@](\d+)$")  # this pack's spelling, e.g. "layers.update:3"


def dit_site_from_hook(hook: str | None) -> tuple[str, int] | None:
    """``"transformer.transformer_blocks.18.update"`` -> ``("transformer_blocks.update", 18)``; None when the name
    is not a DiT block. ``.update_context`` names the text stream's update."""
    hook = (hook or "").strip()
    own = _OWN.match(hook)
    if own and parse_dit_choice(own.group(1)):
        return own.group(1), int(own.group(2))
    found = _HOOK.match(hook)
    if found is None:
        return None
    name, block, mark = found.groups()
    if mark == ".update_context":
        if name != "transformer_blocks":
            return None
        return f"{name}{CONTEXT}.update", int(block)
    return f"{name}.{'update' if mark else 'out'}", int(block)


def dit_family(model) -> DiTFamily:
    """The DiT family of a MODEL; a one-line error for any other model."""
    family = model_family(model)
    diffusion_model = model.get_model_object("diffusion_model")
    if family not in FAMILY_TABLE or not hasattr(diffusion_model, FAMILY_TABLE[family].blocks):
        raise ValueError(f"DiT sites need an {', '.join(DIT_FAMILIES[:-1])} or {DIT_FAMILIES[-1]} model; this one is "
                         f"{family or type(diffusion_model).__name__}")
    return FAMILY_TABLE[family]


def dit_width(model) -> int:
    """The width of the blocks of a DiT MODEL (every site of a DiT family has it)."""
    return int(getattr(model.get_model_object("diffusion_model"), dit_family(model).width))


def check_dit_site(model, site: str, block: int, reads: str = "out", d_in: int | None = None) -> Site:
    """The site ``site`` of block ``block`` of a DiT MODEL, read as ``reads``; one-line errors for anything else."""
    family = dit_family(model)
    name = model_family(model)
    if reads not in READS:
        raise ValueError(f"reads {reads!r} is not one of {', '.join(READS)}")
    sites = family_sites(family)
    if site not in sites:
        raise ValueError(f"site {site!r} is not in this {name} model; it has {', '.join(sites)} "
                         f"(each as .out or .update)")
    count = len(getattr(model.get_model_object("diffusion_model"), family.blocks))
    if not 0 <= block < count:
        raise ValueError(f"block {block} is out of range for {site} of this {name} model: it has {count} blocks "
                         f"(0..{count - 1})")
    stream = family.streams[sites.index(site)]
    if stream == "txt" and family is _SD3 and block == count - 1:
        raise ValueError(f"block {block} of this {name} model has no context output (its last block only reads the "
                         f"context); choose {site} block 0..{count - 2}")
    width = dit_width(model)
    if d_in is not None and d_in != width:
        raise ValueError(f"the SAE reads {d_in}-d activations but {site}.{block} of this {name} model is {width}-d: "
                         f"load an SAE trained at this site")
    diffusers = f"{family.diffusers}.{{N}}" + (" (context)" if stream == "txt" else "")
    return Site(f"{site}.{reads}", "double", stream, family.hook, None, diffusers, reads)
