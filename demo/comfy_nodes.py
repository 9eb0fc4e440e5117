"""Nodes only the demo registers: the tiny FLUX and its conditioning (no file can hold them: ComfyUI's
model detection fixes FLUX at 24 heads) and the latent-to-RGB preview projection.
"""
from __future__ import annotations

from comfy_api.latest import io

from .latent_rgb import latent_to_rgb
from .tiny_flux import build_tiny_flux, tiny_conditioning

# The demo's FLUX: twice the test bench's width, same block layout (head dim 32 = sum of axes_dim)
DEMO_FLUX = dict(hidden_size=128, num_heads=4, axes_dim=[8, 12, 12], depth=2, depth_single_blocks=2)
_built: dict[int, object] = {}


def demo_flux(seed: int):
    """The demo's tiny FLUX for ``seed``, built once per process (training and sampling share it)."""
    if seed not in _built:
        _built[seed] = build_tiny_flux(seed=seed, **DEMO_FLUX)
    return _built[seed]


class SAEDemoTinyFlux(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEDemoTinyFlux", display_name="Tiny FLUX (demo)", category="sae/demo",
            description="A tiny FLUX-architecture model with deterministic random weights (demo only).",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1)],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        return io.NodeOutput(demo_flux(seed))


class SAEDemoConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEDemoConditioning", display_name="Tiny FLUX conditioning (demo)", category="sae/demo",
            description="Random 'text' tokens and pooled vector shaped for the tiny FLUX (demo only).",
            inputs=[io.Int.Input("seed", default=1, min=0, max=2**31 - 1),
                    io.Float.Input("guidance", default=3.5, min=0.0, max=100.0)],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, seed, guidance) -> io.NodeOutput:
        return io.NodeOutput(tiny_conditioning(seed=seed, guidance=guidance))


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


DEMO_NODES = (SAEDemoTinyFlux, SAEDemoConditioning, SAEDemoLatentToRGB)


def register_demo_nodes() -> None:
    """Put the demo's nodes into ComfyUI's node table (never part of the pack's own node list)."""
    import nodes

    for node_cls in DEMO_NODES:
        schema = node_cls.GET_SCHEMA()
        nodes.NODE_CLASS_MAPPINGS[schema.node_id] = node_cls
        nodes.NODE_DISPLAY_NAME_MAPPINGS[schema.node_id] = schema.display_name
