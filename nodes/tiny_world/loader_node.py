"""The ``TinyWorldLoader`` node: Tiny World's MODEL, CLIP, VAE and SAE, from the weights shipped in the pack."""
from __future__ import annotations

from comfy_api.latest import io

from ..comfy_types import SAEType
from ..sae_loader import SAE_CACHE
from . import models


class TinyWorldLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TinyWorldLoader",
            display_name="Load Tiny World",
            category="sae_steering/tiny world",
            description="A tiny text-to-image world (64x64 coloured shapes: 'a red circle') trained into a FLUX-"
                        "architecture model, with its VAE, text encoder and an SAE whose features are labelled "
                        "(red, blue, circle, ...). Runs on a CPU in seconds: the place to see steering work.",
            inputs=[],
            outputs=[io.Model.Output(display_name="MODEL"), io.Clip.Output(display_name="CLIP"),
                     io.Vae.Output(display_name="VAE"), SAEType.Output(display_name="SAE")],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        flux, clip, vae, sae_path = models.load_models()
        return io.NodeOutput(flux, clip, vae, SAE_CACHE.get(str(sae_path), "auto"))
