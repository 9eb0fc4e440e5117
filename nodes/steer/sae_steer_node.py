"""``SAESteer`` ("SAE Steer"): SAE Steer FLUX's inputs for every family the pack hooks.

The site is resolved in the connected model's family and tapped through ``nodes/sites/any_site.py``:
FLUX.1 / FLUX.2 / Chroma sites as SAE Steer FLUX taps them; SD1.5 / SDXL spatial transformers (diffusers
names, ``.update`` for the residual update) through the UNet tap; SD3/3.5, Qwen-Image, Lumina2, Z-Image and
Wan blocks (``transformer_blocks.out`` with ``block``, ...) through the DiT tap. Every family gets the same
steering callback, so mask, schedule, the CFG-signed choice and the measured strength units work the same way.
"""
from __future__ import annotations

from comfy_api.latest import io

from ..sites.any_site import attach_site, resolve_site
from ..sites.choice import site_input
from ..sites.tap import TapSpec
from .flux_steer_node import SAEFluxSteer
from .steer_request import steer_request


class SAESteer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        # SAE Steer FLUX's inputs; the site list grows by the other families' sites
        inputs = [site_input() if i.id == "site" else i for i in SAEFluxSteer.define_schema().inputs]
        return io.Schema(
            node_id="SAESteer",
            display_name="SAE Steer",
            category="sae_steering",
            description="Steer SAE features at one site of FLUX.1/FLUX.2/Chroma, SDXL/SD1.5, SD3/3.5, Qwen-Image, "
                        "Lumina2/Z-Image or Wan during sampling (on a clone of the model).",
            inputs=inputs,
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, sae, site, block, tokens, features, strength, mode, keep_error,
                start_percent, end_percent, apply_to, scale=None, strength_unit="absolute", mask=None,
                schedule="") -> io.NodeOutput:
        site, block = resolve_site(model, site, block, sae)
        request = steer_request(sae, site, block, features, strength, mode, keep_error, apply_to, scale,
                                strength_unit, mask, schedule)
        spec = TapSpec(site, block, tokens, request.apply_to, start_percent, end_percent,
                       track_percent=request.track_percent)
        patched, _ = attach_site(model, spec, request.callback, d_in=sae.d_in)
        return io.NodeOutput(patched)
