"""One mechanism for reading and writing a FLUX activation site during sampling.

Steering, measuring and scanning all attach a *tap* to a ``model.clone()``: a callback that sees
the selected activations at a site (rows of the chosen CFG half, the chosen tokens, inside the
step window) and may return a replacement. The tap is made of
- a ``WrappersMP.DIFFUSION_MODEL`` wrapper that, per forward, works out which rows and tokens
  are selected (``cond_or_uncond``, text length from the context, image-token count from the
  latent) and whether the current sigma is inside the window; for attention/MLP sites it also
  registers the forward (pre-)hook and removes it in ``finally``;
- when the step window is not the whole sampling (or the callback wants each step's percent), a
  ``WrappersMP.APPLY_MODEL`` wrapper that turns the window's percents into sigmas with the ``model_sampling`` the model runs with *now* (a
  ``ModelSamplingFlux`` shift applied after the steering node counts);
- for block-output and residual-update (``*.update``: output − input) sites, a ``patches_replace["dit"]``
  entry that chains any replacement already there (Skip Layer Guidance and other taps use the same keys).
Nothing is swapped or overwritten; the shared ``nn.Module`` carries hooks only during a forward.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Callable, Optional

import torch

import comfy.patcher_extension

from ...sae.schedule import percent_at_sigma
from .flux_sites import APPLY_TO_CHOICES, TOKEN_CHOICES, Site, check_site

STATE_KEY = "sae_steering_taps"  # namespaced keys in transformer_options for per-forward state
WINDOW_KEY = "sae_steering_windows"
_tap_ids = itertools.count()


@dataclass(frozen=True)
class TapSpec:
    site: str
    block: int
    tokens: str = "image"          # single-block sites: image | text | all; double img sites: all adds Kontext refs
    apply_to: str = "both"         # positive | negative | both
    start_percent: float = 0.0     # the part of sampling the tap is on: steer while
    end_percent: float = 1.0       # percent_to_sigma(end) <= sigma <= percent_to_sigma(start)
    track_percent: bool = False    # hand the callback the sampling percent of each forward's sigma (schedules)

    def __post_init__(self):
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ValueError(f"start_percent ({self.start_percent}) and end_percent ({self.end_percent}) must "
                             "satisfy 0 <= start_percent <= end_percent <= 1")
        if self.tokens not in TOKEN_CHOICES:
            raise ValueError(f"tokens {self.tokens!r} is not one of {', '.join(TOKEN_CHOICES)}")
        if self.apply_to not in APPLY_TO_CHOICES:
            raise ValueError(f"apply_to {self.apply_to!r} is not one of {', '.join(APPLY_TO_CHOICES)}")

    @property
    def whole_sampling(self) -> bool:
        return self.start_percent == 0.0 and self.end_percent == 1.0

    @property
    def reads_sampling(self) -> bool:
        """Whether the tap needs the model_sampling of the run (window in sigmas, or the percent)."""
        return not self.whole_sampling or self.track_percent


@dataclass
class TapEvent:
    """What a callback learns about the activations it is handed."""
    spec: TapSpec
    sigma: float
    rows: torch.Tensor            # batch rows handed over (indices into the full batch)
    grid: tuple[int, int]         # (h, w) of the generated image in tokens (latent / patch size)
    txt_len: int                  # text tokens in this forward (T5 >= 256, Redux adds more)
    cond_or_uncond: list[int]     # 0 = positive, 1 = negative, one entry per batch chunk
    tokens: slice | None = None   # token range handed over, within the site's stream
    image_tokens: slice | None = None  # the generated image's tokens, relative to the handed-over range
    batch: int = 0                # rows in the whole forward (CFG chunks x latent batch)
    percent: float = float("nan")  # sampling percent of ``sigma`` (only with ``TapSpec.track_percent``)


TapCallback = Callable[[torch.Tensor, TapEvent], Optional[torch.Tensor]]


@dataclass
class _ForwardState:
    event: TapEvent | None        # None: nothing selected in this forward (outside window, no rows)


class _WindowReader:
    """APPLY_MODEL wrapper: the window in sigmas, from the BaseModel's ``model_sampling`` at run time."""

    def __init__(self, tap: "SiteTap"):
        self.tap = tap

    def __deepcopy__(self, memo):
        return self

    def to(self, device_or_dtype):
        return self

    def __call__(self, executor, *args, **kwargs):
        # APPLY_MODEL wrappers get (x, t, c_concat, c_crossattn, control, transformer_options)
        transformer_options = args[5] if len(args) > 5 else kwargs["transformer_options"]
        sampling = executor.class_obj.model_sampling
        spec = self.tap.spec
        windows = transformer_options.setdefault(WINDOW_KEY, {})
        windows[self.tap.uid] = (float(sampling.percent_to_sigma(spec.start_percent)),
                                 float(sampling.percent_to_sigma(spec.end_percent)), sampling)
        try:
            return executor(*args, **kwargs)
        finally:
            windows.pop(self.tap.uid, None)


def _selected_rows(apply_to: str, cond_or_uncond: list[int], batch: int, device) -> torch.Tensor | None:
    """Row indices of the chosen CFG half; None when all rows are chosen."""
    if apply_to == "both":
        return None
    wanted = 0 if apply_to == "positive" else 1
    per_chunk = batch // max(len(cond_or_uncond), 1)
    mask = torch.tensor([c == wanted for c in cond_or_uncond], dtype=torch.bool).repeat_interleave(per_chunk)
    return mask.nonzero().flatten().to(device)


def _token_range(site: Site, spec: TapSpec, stream_len: int, txt_len: int, img_tokens: int) -> tuple[slice, slice | None]:
    """(handed-over token range within the stream, image tokens relative to that range)."""
    stream = site.stream
    if stream == "txt":
        return slice(0, stream_len), None
    if stream == "img":
        if spec.tokens == "all":  # includes Kontext reference-latent tokens after the image
            return slice(0, stream_len), slice(0, img_tokens)
        return slice(0, img_tokens), slice(0, img_tokens)
    # single blocks: cat(txt, img[, refs])
    if spec.tokens == "text":
        return slice(0, txt_len), None
    if spec.tokens == "image":
        return slice(txt_len, txt_len + img_tokens), slice(0, img_tokens)
    return slice(0, stream_len), slice(txt_len, txt_len + img_tokens)


class SiteTap:
    """A callback attached to one site; also the DIFFUSION_MODEL wrapper and block patch."""

    def __init__(self, spec: TapSpec, site: Site, callback: TapCallback, hidden_size: int, patch_size: int):
        self.spec = spec
        self.site = site  # the site object check_site returned: the name is looked up once, in attach_tap
        self.callback = callback
        self.hidden_size = hidden_size
        self.patch_size = patch_size
        self.uid = f"{spec.site}:{spec.block}:{next(_tap_ids)}"
        self.previous = None  # block replacement this one chains (block-output sites)

    # ModelPatcher.clone() deep-copies model_options: share the tap (and its SAE), never copy it.
    def __deepcopy__(self, memo):
        return self

    def to(self, device_or_dtype):
        """Called by ComfyUI when the model moves; the callback decides what follows a device."""
        if isinstance(device_or_dtype, (torch.device, str)) and hasattr(self.callback, "to"):
            self.callback.to(device_or_dtype)
        if self.previous is not None and hasattr(self.previous, "to"):
            self.previous = self.previous.to(device_or_dtype)
        return self

    # -- per forward -------------------------------------------------------------------------
    def _forward_state(self, x, context, transformer_options) -> _ForwardState:
        sigmas = transformer_options.get("sigmas")
        sigma = float(sigmas.max()) if torch.is_tensor(sigmas) else float("nan")
        percent = float("nan")
        if self.spec.reads_sampling:
            sigma_start, sigma_end, sampling = transformer_options[WINDOW_KEY][self.uid]
            if not self.spec.whole_sampling and not sigma_end <= sigma <= sigma_start:
                return _ForwardState(None)
            if self.spec.track_percent:
                percent = percent_at_sigma(sigma, sampling.percent_to_sigma)
        cond_or_uncond = list(transformer_options.get("cond_or_uncond", [0]))
        rows = _selected_rows(self.spec.apply_to, cond_or_uncond, x.shape[0], x.device)
        if rows is not None and rows.numel() == 0:
            return _ForwardState(None)  # e.g. apply_to=negative at cfg 1: there is no negative half
        h = (x.shape[-2] + self.patch_size // 2) // self.patch_size
        w = (x.shape[-1] + self.patch_size // 2) // self.patch_size
        rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
        return _ForwardState(TapEvent(self.spec, sigma, rows, (h, w), context.shape[1], cond_or_uncond,
                                      batch=x.shape[0], percent=percent))

    def _token_ranges(self, stream_len: int, state: _ForwardState) -> tuple[slice, slice | None]:
        """(handed-over token range within the stream, image tokens relative to it) in this forward."""
        h, w = state.event.grid
        return _token_range(self.site, self.spec, stream_len, state.event.txt_len, h * w)

    def _apply(self, stream: torch.Tensor, state: _ForwardState | None, channels: slice | None = None):
        """Hand the selected part of ``stream`` to the callback; put back what it returns."""
        if state is None or state.event is None:
            return stream
        full = stream if channels is None else stream[..., channels]
        tokens, image = self._token_ranges(full.shape[1], state)
        event = dataclasses.replace(state.event, tokens=tokens, image_tokens=image)
        all_rows = event.rows.numel() == full.shape[0]
        selected = full[:, tokens] if all_rows else full[event.rows, tokens]
        replacement = self.callback(selected, event)
        if replacement is None or replacement is selected:  # nothing changed: keep the tensor as it is
            return stream
        whole = all_rows and channels is None and tokens.start == 0 and tokens.stop >= full.shape[1]
        if whole and replacement.shape == stream.shape:  # the callback's result is already a new tensor
            return replacement.to(stream.dtype)
        out = stream.clone()  # never write into the block's own tensor (blocks add in place)
        target = out if channels is None else out[..., channels]
        if all_rows:
            target[:, tokens] = replacement.to(out.dtype)
        else:
            target[event.rows, tokens] = replacement.to(out.dtype)
        return out

    # -- DIFFUSION_MODEL wrapper ---------------------------------------------------------------
    def __call__(self, executor, x, timestep, context, *args, **kwargs):
        # DIFFUSION_MODEL wrappers get the forward's arguments, transformer_options last: FLUX (x, timestep,
        # context, y, guidance, ref_latents, control, transformer_options), Chroma (x, timestep, context,
        # guidance, control, transformer_options)
        transformer_options = kwargs.get("transformer_options", args[-1] if args else {})
        state = self._forward_state(x, context, transformer_options)
        return self._run_forward(state, transformer_options, executor.class_obj,
                                 lambda: executor(x, timestep, context, *args, **kwargs))

    def _run_forward(self, state: _ForwardState, transformer_options: dict, diffusion_model, forward):
        """``forward()`` with this forward's state where the block patch finds it, and the module hook (if the
        site has one) installed only for it: both are gone afterwards, even when the forward fails."""
        states = transformer_options.setdefault(STATE_KEY, {})
        states[self.uid] = state
        handle = None
        try:
            if state.event is not None:
                handle = self._register_hook(diffusion_model, state)
            return forward()
        finally:
            if handle is not None:
                handle.remove()
            states.pop(self.uid, None)

    def _register_hook(self, diffusion_model, state: _ForwardState):
        """The forward hook of a module site (None for block sites: their patch reads the state)."""
        if self.site.hook == "block":
            return None
        blocks = diffusion_model.double_blocks if self.site.block_type == "double" else diffusion_model.single_blocks
        module = blocks[self.spec.block].get_submodule(self.site.module)
        if self.site.hook == "pre":
            attn = slice(0, self.hidden_size)  # linear2 input = cat(attention output, mlp activations)

            def pre_hook(_module, inputs):
                return (self._apply(inputs[0], state, channels=attn),) + tuple(inputs[1:])
            return module.register_forward_pre_hook(pre_hook)

        def hook(_module, _inputs, output):
            return self._apply(output, state)
        return module.register_forward_hook(hook)

    # -- patches_replace["dit"] entry for block-output and residual-update sites -----------------
    def block_patch(self, args, extra):
        """The block's output, or (``*.update`` sites, sdxl-unbox's convention) its output minus its input,
        goes through the callback; an update's change is added to the output."""
        state = args["transformer_options"].get(STATE_KEY, {}).get(self.uid)
        active = state is not None and state.event is not None
        key = "img" if self.site.stream in ("img", "joint") else "txt"
        before = args[key].clone() if active and self.site.reads == "update" else None  # blocks add in place
        out = self.previous(args, extra) if self.previous is not None else extra["original_block"](args)
        if not active:
            return out
        out = dict(out)
        out[key] = self._edit_output(out[key], before, state)
        return out

    def _edit_output(self, output: torch.Tensor, before: torch.Tensor | None, state: _ForwardState):
        """``output`` through the callback; with the block's input ``before`` (update sites) its update
        ``output − before`` goes through instead, and the update's change is added to the output."""
        if before is None:
            return self._apply(output, state)
        update = output - before
        edited = self._apply(update, state)
        if edited is update:  # untouched tokens and rows: the output stays bit-identical
            return output
        return output + (edited - update)


class _BlockPatch:
    """The object stored in patches_replace: a thin, deep-copy-safe forwarder to the tap."""

    def __init__(self, tap: SiteTap):
        self.tap = tap

    def __deepcopy__(self, memo):
        return self

    def to(self, device_or_dtype):
        self.tap.to(device_or_dtype)
        return self

    def __call__(self, args, extra):
        return self.tap.block_patch(args, extra)


def attach_tap(model, spec: TapSpec, callback: TapCallback, d_in: int | None = None):
    """Return a clone of ``model`` with ``callback`` tapping ``spec``; ``model`` is untouched."""
    site = check_site(model, spec.site, spec.block, d_in)
    diffusion_model = model.get_model_object("diffusion_model")
    patched = model.clone()
    tap = SiteTap(spec, site, callback, diffusion_model.hidden_size, diffusion_model.patch_size)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, tap.uid, tap)
    if spec.reads_sampling:
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, tap.uid, _WindowReader(tap))
    if site.hook == "block":
        install_block_patch(patched, tap, f"{site.block_type}_block", spec.block)
    return patched, tap


def install_block_patch(patched, tap: SiteTap, block_type: str, block: int):
    """Put ``tap``'s block patch at ``patches_replace["dit"][(block_type, block)]`` of ``patched``, chaining the
    replacement already there (Skip Layer Guidance and other taps use the same keys)."""
    existing = patched.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    tap.previous = existing.get((block_type, block))
    patched.set_model_patch_replace(_BlockPatch(tap), "dit", block_type, block)
