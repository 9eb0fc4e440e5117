"""Taps on DiT blocks (SD3/3.5, Qwen-Image, Lumina2 / Z-Image, Wan 2.1 / 2.2): the FLUX taps' machinery
(``SiteTap``: rows, tokens, step window, block patch, update sites) with each family's token layout.

Per forward a ``WrappersMP.APPLY_MODEL`` wrapper works out the rows (``cond_or_uncond``), the step window,
the image grid and where the image tokens sit in the stream; APPLY_MODEL because its arguments are the same
for every family (``BaseModel.apply_model``), while the DIFFUSION_MODEL wrapper's differ per family and SD3's
MMDiT has none. Where ComfyUI has a block patch point (SD3, Qwen-Image, Wan: ``patches_replace["dit"]
[("double_block", N)]``) the tap is that patch, chaining any replacement already there; Lumina2 / Z-Image have
none, so the wrapper registers a forward hook on ``layers[N]`` for the forward and removes it in ``finally``.

Tokens handed to the callback: the generated image's (``tokens="image"``; for Wan the video's frames × h × w,
``event.grid = (frames, h, w)``), all of the stream (``"all"``: Qwen's reference latents, Wan's reference and
extra frames, Lumina's caption and padding too) or, on Lumina's joint stream, the caption with its padding
to ``pad_tokens_multiple`` (``"text"``; Z-Image pads to 32 with its learned pad token, which the blocks read too).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import comfy.patcher_extension

from .dit_sites import DiTFamily, check_dit_site, dit_family, dit_site_choices, dit_width, parse_dit_choice
from .model_families import model_family
from .tap import SiteTap, TapSpec, _ForwardState, _WindowReader, install_block_patch


@dataclass
class _DiTState(_ForwardState):
    image_start: int = 0  # tokens before the generated image in the stream (caption, Wan's reference image)


def _patch(diffusion_model) -> tuple[int, int]:
    """(frames, pixels) per token side: Wan's patch is (1, 2, 2), the others' an int."""
    patch = diffusion_model.patch_size
    return (int(patch[0]), int(patch[1])) if isinstance(patch, (tuple, list)) else (1, int(patch))


def _image_start(family: DiTFamily, diffusion_model, context, conds) -> int:
    """Where the generated image starts in the stream the site reads."""
    if family.streams == ("joint",):  # Lumina: cat(caption padded to pad_tokens_multiple, image)
        multiple = diffusion_model.pad_tokens_multiple or 1
        return context.shape[1] + (-context.shape[1]) % multiple
    reference = conds.get("reference_latent") if family.video else None
    if reference is not None and getattr(diffusion_model, "ref_conv", None) is not None:
        side = _patch(diffusion_model)[1]  # Wan's ref_conv tokens come first
        return (reference.shape[-2] // side) * (reference.shape[-1] // side)
    return 0


class DiTTap(SiteTap):
    """A callback on one DiT block's stream; the APPLY_MODEL wrapper that reads each forward's layout."""

    def __init__(self, spec: TapSpec, site, family: DiTFamily, callback, width: int, patch: tuple[int, int]):
        super().__init__(spec, site, callback, width, patch[1])
        self.family = family
        self.frames_per_token = patch[0]

    def __call__(self, executor, *args, **kwargs):
        # APPLY_MODEL wrappers get (x, t, c_concat, c_crossattn, control, transformer_options, **conds)
        x, context = args[0], args[3]
        transformer_options = args[5] if len(args) > 5 else kwargs["transformer_options"]
        diffusion_model = executor.class_obj.diffusion_model
        state = self._dit_state(diffusion_model, x, context, transformer_options, kwargs)
        return self._run_forward(state, transformer_options, diffusion_model, lambda: executor(*args, **kwargs))

    def _dit_state(self, diffusion_model, x, context, transformer_options, conds) -> _ForwardState:
        state = self._forward_state(x, context, transformer_options)  # rows, window, (h, w)
        if state.event is None:
            return state
        grid = state.event.grid
        frames = -(-x.shape[2] // self.frames_per_token) if x.ndim == 5 else 1
        if self.family.video or frames > 1:
            grid = (frames, *grid)
        start = _image_start(self.family, diffusion_model, context, conds)
        txt_len = start if self.site.stream == "joint" else state.event.txt_len
        return _DiTState(dataclasses.replace(state.event, grid=grid, txt_len=txt_len), image_start=start)

    def _token_ranges(self, stream_len: int, state: _DiTState) -> tuple[slice, slice | None]:
        if self.site.stream == "txt":
            return slice(0, stream_len), None
        start, count = state.image_start, math.prod(state.event.grid)
        if self.spec.tokens == "image":
            return slice(start, start + count), slice(0, count)
        if self.spec.tokens == "text":  # joint stream only (attach_dit_tap checks)
            return slice(0, start), None
        return slice(0, stream_len), slice(start, start + count)

    def _register_hook(self, diffusion_model, state: _DiTState):
        if self.site.hook != "module":  # a block patch reads the state instead
            return None
        block = getattr(diffusion_model, self.family.blocks)[self.spec.block]
        update = self.site.reads == "update"

        def hook(_module, inputs, output):  # Lumina's layers take the stream first and add out of place
            return self._edit_output(output, inputs[0] if update else None, state)
        return block.register_forward_hook(hook)


def attach_dit_tap(model, spec: TapSpec, callback, d_in: int | None = None):
    """Return a clone of ``model`` with ``callback`` tapping ``spec`` (``spec.site`` is a ``<site>.<reads>`` choice,
    e.g. ``transformer_blocks.update``); ``model`` is untouched."""
    choice = parse_dit_choice(spec.site)
    if choice is None:
        raise ValueError(f"site {spec.site!r} is not one of {', '.join(dit_site_choices())}")
    site = check_dit_site(model, choice[0], spec.block, choice[1], d_in)
    if spec.tokens == "text" and site.stream == "img":
        raise ValueError(f"tokens 'text': {spec.site} of this {model_family(model)} model holds no text tokens; "
                         f"choose image or all")
    family = dit_family(model)
    diffusion_model = model.get_model_object("diffusion_model")
    patched = model.clone()
    tap = DiTTap(spec, site, family, callback, dit_width(model), _patch(diffusion_model))
    apply_model = comfy.patcher_extension.WrappersMP.APPLY_MODEL
    if spec.reads_sampling:  # the window in sigmas: this wrapper goes first, so it is the outer one
        patched.add_wrapper_with_key(apply_model, tap.uid, _WindowReader(tap))
    patched.add_wrapper_with_key(apply_model, tap.uid, tap)
    if site.hook == "block":
        install_block_patch(patched, tap, "double_block", spec.block)
    return patched, tap
