"""Test-side capture at a DiT block (SD3/3.5, Qwen-Image, Lumina2, Z-Image, Wan), independent of the pack's taps:
plain torch hooks on ComfyUI's own block modules, registered before sampling, give each forward's block input and
output and what the next block is given; a wrapper of the test's own records which CFG half each row is."""
from __future__ import annotations

import contextlib

import comfy.patcher_extension

from comfyui_sae_steering.harness.tiny_dit import tiny_dit_conditioning, tiny_dit_latent
from comfyui_sae_steering.harness.tiny_flux import sample

# tiny config -> (family, ComfyUI's block list, the image site), written here from ComfyUI's code, not the pack's table
FAMILIES = {
    "SD3": ("SD3/3.5", "joint_blocks", "transformer_blocks"),
    "QwenImage": ("Qwen-Image", "transformer_blocks", "transformer_blocks"),
    "Lumina2": ("Lumina2", "layers", "layers"),
    "ZImage": ("Z-Image", "layers", "layers"),
    "WAN21_T2V": ("Wan 2.1", "blocks", "blocks"),
    "WAN22_T2V": ("Wan 2.2", "blocks", "blocks"),
}
# FLUX.2 and Chroma: FLUX's double blocks (block(img=, txt=, ...) returns (img, txt)), hooked by the FLUX table;
# tiny config -> (family, block list, image site, patch size)
FLUX_LIKE = {
    "Flux2": ("FLUX.2", "double_blocks", "double.img", 1),
    "Chroma": ("Chroma", "double_blocks", "double.img", 2),
}
BLOCK = 0  # every tiny model has a block after it, whose input is what flows on


def run(model, name, steps=2, cfg=2.0, seed=3, positive=None, negative=None):
    positive = positive or tiny_dit_conditioning(name, 1)
    negative = negative or tiny_dit_conditioning(name, 2)
    return sample(model, positive, negative, latent=tiny_dit_latent(name), steps=steps, cfg=cfg, seed=seed)


def blocks(model, name):
    return getattr(model.get_model_object("diffusion_model"), {**FAMILIES, **FLUX_LIKE}[name][1])


def stream_in(name, stream, args, kwargs):
    """The stream a block is given: SD3 block(context, x), Qwen block(hidden_states=, encoder_hidden_states=),
    Lumina layer(x, ...), Wan block(x, ...), FLUX double block(img=, txt=, ...)."""
    if name in FLUX_LIKE:
        return kwargs["img" if stream == "img" else "txt"]
    if name == "SD3":
        return args[1] if stream == "img" else args[0]
    if name == "QwenImage":
        return kwargs["hidden_states" if stream == "img" else "encoder_hidden_states"]
    return args[0]


def stream_out(name, stream, output):
    """SD3 and Qwen blocks return (text, image), FLUX double blocks (image, text); Lumina and Wan the stream."""
    if name in FLUX_LIKE:
        return output[0] if stream == "img" else output[1]
    if name in ("SD3", "QwenImage"):
        return output[1] if stream == "img" else output[0]
    return output


@contextlib.contextmanager
def block_io(model, name, block, stream, record):
    """(input, output) of the block's stream per forward, and what the next block is given (``record["next"]``),
    copied by plain hooks registered before sampling: they see the unpatched block. The last block has no next."""
    pending = []
    module_list = blocks(model, name)
    module = module_list[block]
    handles = [
        module.register_forward_pre_hook(lambda m, a, k: pending.append(stream_in(name, stream, a, k).clone()),
                                         with_kwargs=True),
        module.register_forward_hook(lambda m, a, k, out: record["io"].append(
            (pending.pop(), stream_out(name, stream, out).clone())), with_kwargs=True),
    ]
    if block + 1 < len(module_list):
        handles.append(module_list[block + 1].register_forward_pre_hook(
            lambda m, a, k: record["next"].append(stream_in(name, stream, a, k).clone()), with_kwargs=True))
    if name in ("Lumina2", "ZImage"):  # the caption's length in the joint stream, from the caption refiner
        handles.append(model.get_model_object("diffusion_model").context_refiner[-1].register_forward_hook(
            lambda m, a, out: record["caption"].append(out.shape[1])))
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


def new_record():
    return {"io": [], "next": [], "caption": [], "rows": []}


def record_rows(patched, record):
    """cond_or_uncond of every forward (an APPLY_MODEL wrapper of the test's own)."""
    def wrapper(executor, *args, **kwargs):
        record["rows"].append(list(args[5]["cond_or_uncond"]))
        return executor(*args, **kwargs)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test_rows", wrapper)
    return patched


def image_tokens(name, record) -> slice:
    """The generated image's tokens in the image (or joint) stream: frames x h x w after the caption."""
    shape, patch = tiny_dit_latent(name).shape, FLUX_LIKE[name][3] if name in FLUX_LIKE else 2
    count = (shape[2] if len(shape) == 5 else 1) * (-(-shape[-2] // patch)) * (-(-shape[-1] // patch))
    start = record["caption"][0] if record["caption"] else 0
    return slice(start, start + count)


def site_of(name, stream, reads):
    """The site input naming ``stream`` (img, txt) of the tiny model ``name`` read as ``reads`` (out, update)."""
    if name in FLUX_LIKE:
        return f"double.{stream}.{reads}"
    return f"{FAMILIES[name][2]}{'.context' if stream == 'txt' else ''}.{reads}"


def grid_of(name) -> tuple[int, ...]:
    """The image-token grid of the tiny model's latent: (h, w), or (frames, h, w) for Wan."""
    shape, patch = tiny_dit_latent(name).shape, FLUX_LIKE[name][3] if name in FLUX_LIKE else 2
    grid = (-(-shape[-2] // patch), -(-shape[-1] // patch))
    return (shape[2], *grid) if name.startswith("WAN") else grid


def edited_output(inp, out, tokens: slice, reads: str, edit):
    """What the block should hand on when ``edit`` changes the site's tokens: the output with its tokens edited
    (``out`` sites), or with the edit's change of the update (output − input) added (``update`` sites)."""
    expected = out.clone()
    if reads == "update":
        update = (out - inp)[:, tokens]
        expected[:, tokens] = out[:, tokens] + (edit(update) - update)
    else:
        expected[:, tokens] = edit(out[:, tokens])
    return expected
