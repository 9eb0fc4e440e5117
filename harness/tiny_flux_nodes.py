"""ComfyUI nodes that build the tiny FLUX and its conditioning (no model file can hold a FLUX this small:
ComfyUI's model detection fixes 24 heads). The end-to-end tests register the ``SAETest*`` nodes (through
``tests/e2e_test_nodes``), the demo the ``SAEDemo*`` nodes; never part of the pack's own node list.
"""
from __future__ import annotations

from comfy_api.latest import io

from .tiny_flux import DEMO_FLUX, build_tiny_flux, tiny_conditioning

SEED = dict(min=0, max=2**31 - 1)


class TinyFlux(io.ComfyNode):
    """The tiny FLUX for ``seed``; a subclass names the node and its config (``OVERRIDES``)."""
    NODE_ID = DISPLAY_NAME = CATEGORY = DESCRIPTION = ""
    OVERRIDES: dict = {}
    CACHE: dict | None = None  # a dict: one model per seed and process (the demo trains and samples on one)

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=cls.CATEGORY,
                         description=cls.DESCRIPTION,
                         inputs=[io.Int.Input("seed", default=0, **SEED)], outputs=[io.Model.Output()])

    @classmethod
    def build(cls, seed: int):
        if cls.CACHE is None:
            return build_tiny_flux(seed=seed, **cls.OVERRIDES)
        if seed not in cls.CACHE:
            cls.CACHE[seed] = build_tiny_flux(seed=seed, **cls.OVERRIDES)
        return cls.CACHE[seed]

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        return io.NodeOutput(cls.build(seed))


class TinyConditioning(io.ComfyNode):
    """CONDITIONING shaped for the tiny FLUX (``tiny_conditioning``); a subclass names the node, the seed's
    default and its further inputs (``OPTIONS``, passed on as keyword arguments)."""
    NODE_ID = DISPLAY_NAME = CATEGORY = DESCRIPTION = ""
    SEED_DEFAULT = 0
    OPTIONS: tuple = ()

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=cls.CATEGORY,
                         description=cls.DESCRIPTION,
                         inputs=[io.Int.Input("seed", default=cls.SEED_DEFAULT, **SEED), *cls.OPTIONS],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, seed, **options) -> io.NodeOutput:
        return io.NodeOutput(tiny_conditioning(seed=seed, **options))


class SAETestTinyFlux(TinyFlux):
    NODE_ID, DISPLAY_NAME, CATEGORY = "SAETestTinyFlux", "Tiny FLUX (test only)", "_for_testing"


class SAETestTinyConditioning(TinyConditioning):
    NODE_ID, DISPLAY_NAME, CATEGORY = "SAETestTinyConditioning", "Tiny FLUX conditioning (test only)", "_for_testing"
    OPTIONS = (io.Int.Input("text_tokens", default=8, min=1, max=512),)


class SAEDemoTinyFlux(TinyFlux):
    NODE_ID, DISPLAY_NAME, CATEGORY = "SAEDemoTinyFlux", "Tiny FLUX (demo)", "sae/demo"
    DESCRIPTION = "A tiny FLUX-architecture model with deterministic random weights (demo only)."
    OVERRIDES = DEMO_FLUX
    CACHE = {}


class SAEDemoConditioning(TinyConditioning):
    NODE_ID, DISPLAY_NAME, CATEGORY = "SAEDemoConditioning", "Tiny FLUX conditioning (demo)", "sae/demo"
    DESCRIPTION = "Random 'text' tokens and pooled vector shaped for the tiny FLUX (demo only)."
    SEED_DEFAULT = 1
    OPTIONS = (io.Float.Input("guidance", default=3.5, min=0.0, max=100.0),)


TEST_NODES = (SAETestTinyFlux, SAETestTinyConditioning)
DEMO_NODES = (SAEDemoTinyFlux, SAEDemoConditioning)
