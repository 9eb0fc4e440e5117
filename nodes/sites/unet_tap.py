"""Taps on SD1.5 / SDXL spatial transformers: the same callbacks as the FLUX taps (``SiteTap``), hooked
with a forward hook that a ``WrappersMP.DIFFUSION_MODEL`` wrapper registers before each forward and
removes in ``finally`` (the UNet has no block-replacement patch for its transformers).

The callback gets the module's output, or its update (output − input), as tokens [rows, h·w, channels]
of the chosen CFG half inside the step window; what it returns replaces the output (``out``) or is
added to the output as the change of the update (``update``). Rows and positions it leaves alone stay
bit-identical.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import comfy.patcher_extension

from .flux_sites import APPLY_TO_CHOICES
from .tap import SiteTap, TapSpec, _WindowReader
from .unet_sites import check_unet_site

_tap_ids = itertools.count()


@dataclass(frozen=True)
class UNetTapSpec:
    site: str                      # diffusers name, e.g. "up_blocks.0.attentions.1"
    reads: str = "out"             # "out" | "update"
    apply_to: str = "both"
    start_percent: float = 0.0
    end_percent: float = 1.0
    tokens: str = "image"          # every UNet token is an image position
    track_percent: bool = False    # hand the callback each forward's sampling percent (as TapSpec)

    def __post_init__(self):
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ValueError(f"start_percent ({self.start_percent}) and end_percent ({self.end_percent}) must "
                             "satisfy 0 <= start_percent <= end_percent <= 1")
        if self.apply_to not in APPLY_TO_CHOICES:
            raise ValueError(f"apply_to {self.apply_to!r} is not one of {', '.join(APPLY_TO_CHOICES)}")

    @property
    def whole_sampling(self) -> bool:
        return self.start_percent == 0.0 and self.end_percent == 1.0

    reads_sampling = TapSpec.reads_sampling  # the same rule: a window in sigmas or the percent needs model_sampling


class UNetTap(SiteTap):
    """A callback on one spatial transformer; the DIFFUSION_MODEL wrapper that hooks it per forward."""

    def __init__(self, spec: UNetTapSpec, callback, module_path: str):  # not super(): that reads the FLUX table
        self.spec = spec
        self.callback = callback
        self.module_path = module_path
        self.patch_size = 1  # the latent grid; each level's own grid is read from the module's input
        self.previous = None
        self.uid = f"unet:{spec.site}:{spec.reads}:{next(_tap_ids)}"

    def __call__(self, executor, x, timestep, context, *args, **kwargs):
        # UNet DIFFUSION_MODEL wrappers get (x, timesteps, context, y, control, transformer_options)
        transformer_options = args[2] if len(args) > 2 else kwargs.get("transformer_options", {})
        state = self._forward_state(x, context, transformer_options)
        return self._run_forward(state, transformer_options, executor.class_obj,
                                 lambda: executor(x, timestep, context, *args, **kwargs))

    def _register_hook(self, diffusion_model, state):
        module = diffusion_model.get_submodule(self.module_path)
        return module.register_forward_hook(lambda _m, inputs, output: self._edit(inputs[0], output, state))

    def _edit(self, module_input, output, state):
        b, c, h, w = output.shape
        tokens = output.movedim(1, 3).reshape(b, h * w, c)
        seen = tokens
        if self.spec.reads == "update":
            seen = tokens - module_input.movedim(1, 3).reshape(b, h * w, c)
        event = dataclasses.replace(state.event, grid=(h, w), tokens=slice(0, h * w), image_tokens=slice(0, h * w))
        rows = event.rows
        all_rows = rows.numel() == b
        selected = seen if all_rows else seen[rows]
        replacement = self.callback(selected, event)
        if replacement is None or replacement is selected:
            return output
        replacement = replacement.to(output.dtype)
        if self.spec.reads == "update":  # the change of the update is added to the output
            replacement = (tokens if all_rows else tokens[rows]) + (replacement - selected)
        edited = tokens.clone()
        if all_rows:
            edited[:] = replacement
        else:
            edited[rows] = replacement
        return edited.reshape(b, h, w, c).movedim(3, 1).contiguous()


def attach_unet_tap(model, spec: UNetTapSpec, callback, d_in: int | None = None):
    """Return a clone of ``model`` with ``callback`` tapping ``spec``; ``model`` is untouched."""
    path = check_unet_site(model, spec.site, spec.reads, d_in)
    patched = model.clone()
    tap = UNetTap(spec, callback, path)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, tap.uid, tap)
    if spec.reads_sampling:  # a step window in sigmas, or each step's percent for a schedule
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, tap.uid, _WindowReader(tap))
    return patched, tap
