"""The FLUX activation sites an SAE can read and write, and checks of a model against them.

Names follow the diffusers hook points public FLUX SAEs were trained on:

| site              | ComfyUI v0.8.0 tensor                                   | diffusers module                       |
|-------------------|---------------------------------------------------------|----------------------------------------|
| double.img.out    | image stream returned by ``double_blocks[N]``           | ``transformer_blocks.N`` (image out)   |
| double.txt.out    | text stream returned by ``double_blocks[N]``            | ``transformer_blocks.N`` (text out)    |
| double.img.attn   | output of ``double_blocks[N].img_attn.proj``            | ``transformer_blocks.N.attn`` (image)  |
| double.txt.attn   | output of ``double_blocks[N].txt_attn.proj``            | ``transformer_blocks.N.attn`` (text)   |
| double.img.mlp    | output of ``double_blocks[N].img_mlp``                  | ``transformer_blocks.N.ff``            |
| double.txt.mlp    | output of ``double_blocks[N].txt_mlp``                  | ``transformer_blocks.N.ff_context``    |
| single.out        | ``cat(txt, img)`` returned by ``single_blocks[N]``      | ``single_transformer_blocks.N``        |
| single.attn       | first ``hidden`` channels of ``single_blocks[N].linear2``'s input | ``single_transformer_blocks.N.attn`` |
| double.img.update | image stream out − in of ``double_blocks[N]``           | ``transformer_blocks.N.update``        |
| double.txt.update | text stream out − in of ``double_blocks[N]``            | ``transformer_blocks.N.update_context``|
| single.update     | ``cat(txt, img)`` out − in of ``single_blocks[N]``      | ``single_transformer_blocks.N.update`` |

Update sites (sdxl-unbox's convention) read a block's residual update, output − input; what the SAE edit
changes in the update is added to the block's output. ``.update`` is the hook-name marker (no diffusers
module has that name).
"""
from __future__ import annotations

from dataclasses import dataclass

from .model_families import FLUX_FAMILIES, model_family, unsupported_family


@dataclass(frozen=True)
class Site:
    name: str
    block_type: str        # "double" | "single": which block list and patches_replace key
    stream: str            # "img" | "txt" (double blocks) or "joint" (single blocks: text first, then image)
    hook: str              # "block": block output via patches_replace; "module": forward hook; "pre": pre-hook
    module: str | None     # attribute path inside the block for hooked sites
    diffusers: str         # the diffusers module the same tensor comes from
    reads: str = "out"     # "out": the tensor itself; "update": block output − block input (block sites)


SITES: dict[str, Site] = {s.name: s for s in (
    Site("double.img.out", "double", "img", "block", None, "transformer_blocks.{N}"),
    Site("double.txt.out", "double", "txt", "block", None, "transformer_blocks.{N} (encoder_hidden_states)"),
    Site("double.img.attn", "double", "img", "module", "img_attn.proj", "transformer_blocks.{N}.attn"),
    Site("double.txt.attn", "double", "txt", "module", "txt_attn.proj", "transformer_blocks.{N}.attn (context)"),
    Site("double.img.mlp", "double", "img", "module", "img_mlp", "transformer_blocks.{N}.ff"),
    Site("double.txt.mlp", "double", "txt", "module", "txt_mlp", "transformer_blocks.{N}.ff_context"),
    Site("single.out", "single", "joint", "block", None, "single_transformer_blocks.{N}"),
    Site("single.attn", "single", "joint", "pre", "linear2", "single_transformer_blocks.{N}.attn"),
    Site("double.img.update", "double", "img", "block", None, "transformer_blocks.{N}.update", "update"),
    Site("double.txt.update", "double", "txt", "block", None, "transformer_blocks.{N}.update_context", "update"),
    Site("single.update", "single", "joint", "block", None, "single_transformer_blocks.{N}.update", "update"),
)}
SITE_NAMES = list(SITES)
TOKEN_CHOICES = ["image", "text", "all"]
APPLY_TO_CHOICES = ["positive", "negative", "both"]

# diffusers / hook-name spellings found in SAE metadata -> our site names
_HOOK_PATTERNS = (
    ("single_transformer_blocks.", ".update", "single.update"),
    ("transformer_blocks.", ".update_context", "double.txt.update"),
    ("transformer_blocks.", ".update", "double.img.update"),
    ("single_transformer_blocks.", ".attn", "single.attn"),
    ("single_transformer_blocks.", "", "single.out"),
    ("transformer_blocks.", ".attn", "double.img.attn"),
    ("transformer_blocks.", ".ff_context", "double.txt.mlp"),
    ("transformer_blocks.", ".ff", "double.img.mlp"),
    ("transformer_blocks.", "", "double.img.out"),
)


def site_from_hook(hook: str | None) -> tuple[str, int] | None:
    """``"transformer_blocks.18"`` -> ``("double.img.out", 18)``; None when the name is not a FLUX site."""
    if not hook:
        return None
    hook = hook.strip()
    if hook in SITES:
        return None
    for name in SITES:  # our own spelling, e.g. "single.attn.9" or "single.attn:9"
        for sep in (".", ":", "@"):
            if hook.startswith(name + sep) and hook[len(name) + 1:].isdigit():
                return name, int(hook[len(name) + 1:])
    for prefix, suffix, site in _HOOK_PATTERNS:
        start = hook.find(prefix)
        if start < 0 or (prefix == "transformer_blocks." and hook[start - 7:start] == "single_"):
            continue
        rest = hook[start + len(prefix):]
        number = rest.split(".", 1)[0]
        tail = rest[len(number):]
        if number.isdigit() and tail == suffix:
            return site, int(number)
    return None


def flux_blocks(model):
    """The FLUX diffusion model behind a ModelPatcher; a clear error for anything else."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = model_family(model)  # another known family is refused even where it has FLUX's block lists
    if (family is not None and family not in FLUX_FAMILIES) or not (
            hasattr(diffusion_model, "double_blocks") and hasattr(diffusion_model, "single_blocks")):
        raise unsupported_family(model, FLUX_FAMILIES)
    return diffusion_model


def check_site(model, site: str, block: int, d_in: int | None = None) -> Site:
    """Validate site name, block index and SAE width against the model before sampling."""
    if site not in SITES:
        raise ValueError(f"site {site!r} is not one of {', '.join(SITE_NAMES)}")
    spec = SITES[site]
    diffusion_model = flux_blocks(model)
    blocks = diffusion_model.double_blocks if spec.block_type == "double" else diffusion_model.single_blocks
    if not 0 <= block < len(blocks):
        raise ValueError(f"block {block} is out of range for site {site}: this model has {len(blocks)} "
                         f"{spec.block_type} blocks (0..{len(blocks) - 1})")
    hidden = diffusion_model.hidden_size
    if d_in is not None and d_in != hidden:
        raise ValueError(f"the SAE reads {d_in}-d activations but this FLUX model's hidden size is {hidden} "
                         f"(site {site}, block {block}): load an SAE trained on this model")
    return spec
