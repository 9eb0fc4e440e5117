"""Test-only ComfyUI node pack, installed by the end-to-end tests next to the real pack.

- ``SAETestTinyFlux`` / ``SAETestTinyConditioning``: the tiny FLUX of ``demo/tiny_flux.py`` and its
  conditioning (``UNETLoader`` cannot load a FLUX this small: model detection fixes 24 heads);
- ``POST /sae_e2e/validate``: ComfyUI's own ``execution.validate_prompt`` on an API-format prompt,
  inside the server, without queueing it (the example workflows name model files that are empty
  placeholders here, so they are validated, never executed).

Inside ComfyUI the real pack is importable only under a path-derived module name, so
``demo/tiny_flux.py`` is loaded by file path.
"""
from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import execution
from aiohttp import web
from comfy_api.latest import ComfyExtension, io
from server import PromptServer

PACK_ROOT = Path(__file__).resolve().parents[2]  # tests/e2e_test_nodes -> repository root


def _tiny_flux_module():
    spec = importlib.util.spec_from_file_location("sae_e2e_tiny_flux", PACK_ROOT / "demo" / "tiny_flux.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny_flux = _tiny_flux_module()


class SAETestTinyFlux(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="SAETestTinyFlux", display_name="Tiny FLUX (test only)", category="_for_testing",
                         inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1)],
                         outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        return io.NodeOutput(tiny_flux.build_tiny_flux(seed=seed))


class SAETestTinyConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="SAETestTinyConditioning", display_name="Tiny FLUX conditioning (test only)",
                         category="_for_testing",
                         inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1),
                                 io.Int.Input("text_tokens", default=8, min=1, max=512)],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, seed, text_tokens) -> io.NodeOutput:
        return io.NodeOutput(tiny_flux.tiny_conditioning(seed=seed, text_tokens=text_tokens))


class TestNodes(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [SAETestTinyFlux, SAETestTinyConditioning]


async def comfy_entrypoint() -> TestNodes:
    return TestNodes()


@PromptServer.instance.routes.post("/sae_e2e/validate")
async def validate(request):
    prompt = (await request.json())["prompt"]
    valid, error, outputs, node_errors = await execution.validate_prompt(str(uuid.uuid4()), prompt, None)
    return web.json_response({"valid": valid, "error": error, "outputs": sorted(outputs), "node_errors": node_errors})
