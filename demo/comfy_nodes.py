"""Nodes only the demo registers: the tiny FLUX and its conditioning (``harness/tiny_flux_nodes.py``)
and the latent-to-RGB preview projection.
"""
from __future__ import annotations

from comfy_api.latest import io

from .headless import import_from_harness
from .latent_rgb import latent_to_rgb

tiny_flux_nodes = import_from_harness("tiny_flux_nodes")


class SAEDemoLatentToRGB(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEDemoLatentToRGB", display_name="Latent to RGB preview (demo)", category="sae/demo",
            description="ComfyUI's latent preview projection (the model's latent_rgb_factors), upscaled.",
            inputs=[io.Model.Input("model"), io.Latent.Input("samples"),
                    io.Int.Input("upscale", default=8, min=1, max=64)],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, model, samples, upscale) -> io.NodeOutput:
        latent_format = model.get_model_object("latent_format")
        return io.NodeOutput(latent_to_rgb(samples["samples"], latent_format, upscale))


DEMO_NODES = (*tiny_flux_nodes.DEMO_NODES, SAEDemoLatentToRGB)


def register_demo_nodes() -> None:
    """Put the demo's nodes into ComfyUI's node table (never part of the pack's own node list)."""
    import nodes

    for node_cls in DEMO_NODES:
        schema = node_cls.GET_SCHEMA()
        nodes.NODE_CLASS_MAPPINGS[schema.node_id] = node_cls
        nodes.NODE_DISPLAY_NAME_MAPPINGS[schema.node_id] = schema.display_name
