"""``SAESteer`` ("SAE Steer"): SAE Steer FLUX's inputs for every family the pack hooks.

FLUX.1 sites go to ``SAEFluxSteer`` unchanged; SD1.5 / SDXL spatial transformers (diffusers names,
``.update`` for the residual update) go through the UNet tap (``nodes/sites/unet_tap.py``) with the
same steering callback, so mask, schedule and the CFG-signed choice work the same way.
"""
from __future__ import annotations

from comfy_api.latest import io

from ..sites.choice import AUTO_SITE
from ..sites.flux_sites import SITE_NAMES
from ..sites.unet_sites import unet_site_from_hook
from ..sites.unet_tap import UNetTapSpec, attach_unet_tap
from .flux_steer_node import SAEFluxSteer
from .steer_request import steer_request

# every spatial transformer of SD1.5 and SDXL, by its diffusers name (each model has a subset: checked at run)
UNET_SITES = ([f"down_blocks.{level}.attentions.{i}" for level in range(3) for i in range(2)]
              + ["mid_block.attentions.0"]
              + [f"up_blocks.{level}.attentions.{i}" for level in range(4) for i in range(3)])
UNET_SITE_CHOICES = [name + suffix for name in UNET_SITES for suffix in ("", ".update")]


class SAESteer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        flux = SAEFluxSteer.define_schema()
        inputs = []
        for i in flux.inputs:  # the same inputs; the site list grows by the UNet sites
            if i.id == "site":
                i = io.Combo.Input("site", options=SITE_NAMES + UNET_SITE_CHOICES + [AUTO_SITE], default="double.img.out",
                                   tooltip="FLUX sites (block chosen below) or an SD1.5/SDXL spatial transformer by "
                                           "its diffusers name (.update: output minus input); auto = from the SAE.")
            inputs.append(i)
        return io.Schema(
            node_id="SAESteer",
            display_name="SAE Steer",
            category="sae_steering",
            description="Steer SAE features at one site of FLUX.1, SDXL or SD1.5 during sampling (on a clone of the model).",
            inputs=inputs,
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, sae, site, block, tokens, features, strength, mode, keep_error,
                start_percent, end_percent, apply_to, scale=None, strength_unit="absolute", mask=None,
                schedule="") -> io.NodeOutput:
        if site == AUTO_SITE and unet_site_from_hook(sae.hook) is not None:
            name, reads = unet_site_from_hook(sae.hook)
            site = name + (".update" if reads == "update" else "")
        if site not in UNET_SITE_CHOICES:
            return SAEFluxSteer.execute(model, sae, site, block, tokens, features, strength, mode, keep_error,
                                        start_percent, end_percent, apply_to, scale, strength_unit, mask, schedule)
        name, reads = (site[:-len(".update")], "update") if site.endswith(".update") else (site, "out")
        request = steer_request(sae, site, 0, features, strength, mode, keep_error, apply_to, scale, strength_unit,
                                mask, schedule)
        spec = UNetTapSpec(name, reads, request.apply_to, start_percent, end_percent, track_percent=request.track_percent)
        patched, _ = attach_unet_tap(model, spec, request.callback, d_in=sae.d_in)
        return io.NodeOutput(patched)
