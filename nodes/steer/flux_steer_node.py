"""``SAEFluxSteer`` ("SAE Steer FLUX"): steer SAE features inside FLUX's transformer blocks."""
from __future__ import annotations

from comfy_api.latest import io

from ..comfy_types import SAEScaleType, SAEType
from ..sites.choice import STRENGTH_UNITS, resolve_site, site_inputs
from ..sites.flux_sites import SITE_NAMES
from ..sites.tap import TapSpec, attach_tap
from .feature_spec import MODE_NAMES
from .steer_request import STEER_APPLY_TO, steer_request


class SAEFluxSteer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEFluxSteer",
            display_name="SAE Steer FLUX",
            category="sae_steering",
            description="Steer SAE features at one FLUX site during sampling (on a clone of the model).",
            inputs=[
                io.Model.Input("model"),
                SAEType.Input("sae"),
                *site_inputs(choices=SITE_NAMES),
                io.String.Input("features", default="0", multiline=False,
                                tooltip="22420, or a list with own strengths: 22420:2.0, 17:-1.5; labels (blue:2); red>blue:4 "
                                        "replaces red by blue where red is found."),
                io.Float.Input("strength", default=1.0, min=-10000.0, max=10000.0, step=0.01,
                               tooltip="For features listed without their own. FLUX sites want ~0.1-5: measure first."),
                io.Combo.Input("mode", options=MODE_NAMES, default="add where active",
                               tooltip="add where active: boost only where the SAE finds the feature (Gytis-style)."),
                io.Boolean.Input("keep_error", default=True,
                                 tooltip="Keep what the SAE cannot reconstruct: only the edited features change."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001),
                io.Combo.Input("apply_to", options=STEER_APPLY_TO, default="both",
                               tooltip="Which half of classifier-free guidance is steered; 'positive +, negative −' "
                                       "adds on the positive pass and subtracts the same edit on the negative one."),
                SAEScaleType.Input("scale", optional=True,
                                   tooltip="Measured statistics (Measure Activation Scale) for the strength units."),
                io.Combo.Input("strength_unit", options=STRENGTH_UNITS, default="absolute",
                               tooltip="Strengths as given, or times the feature's mean activation when active / "
                                       "the site's mean token norm, read from scale at this site."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Steer only here: resized to the token grid; soft values weight the edit, "
                                      "tokens outside get nothing. One mask, or one per latent."),
                io.String.Input("schedule", default="", optional=True,
                                tooltip="Strength keyframes over sampling percent, multiplied into the edit: "
                                        "0:1.0, 0.4:1.0, 0.6:0.2, 1:0 (linear between them). Empty: constant."),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, sae, site, block, tokens, features, strength, mode, keep_error,
                start_percent, end_percent, apply_to, scale=None, strength_unit="absolute", mask=None,
                schedule="") -> io.NodeOutput:
        site, block = resolve_site(site, block, sae)
        request = steer_request(sae, site, block, features, strength, mode, keep_error, apply_to, scale,
                                strength_unit, mask, schedule)
        spec = TapSpec(site, block, tokens, request.apply_to, start_percent, end_percent,
                       track_percent=request.track_percent)
        patched, _ = attach_tap(model, spec, request.callback, d_in=sae.d_in)
        return io.NodeOutput(patched)
