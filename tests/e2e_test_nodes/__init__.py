"""Test-only ComfyUI node pack, installed by the end-to-end tests next to the real pack.

- ``SAETestTinyFlux`` / ``SAETestTinyConditioning``: the tiny FLUX and its conditioning, from the
  development harness (``harness/tiny_flux_nodes.py``; ``UNETLoader`` cannot load a FLUX this small);
- ``POST /sae_e2e/validate``: ComfyUI's own ``execution.validate_prompt`` on an API-format prompt,
  inside the server, without queueing it (the example workflows name model files that are empty
  placeholders here, so they are validated, never executed).

ComfyUI imports this folder under a path-derived module name, outside any package, so the harness
package is imported from its folder under a private name (its modules import each other relatively).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import uuid
from pathlib import Path

import execution
from aiohttp import web
from comfy_api.latest import ComfyExtension, io
from server import PromptServer

HARNESS = Path(__file__).resolve().parents[2] / "harness"  # tests/e2e_test_nodes -> repository root
HARNESS_NAME = "sae_e2e_harness"


def _harness_module(name: str):
    if HARNESS_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(HARNESS_NAME, HARNESS / "__init__.py",
                                                      submodule_search_locations=[str(HARNESS)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[HARNESS_NAME] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{HARNESS_NAME}.{name}")


class TestNodes(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(_harness_module("tiny_flux_nodes").TEST_NODES)


async def comfy_entrypoint() -> TestNodes:
    return TestNodes()


@PromptServer.instance.routes.post("/sae_e2e/validate")
async def validate(request):
    prompt = (await request.json())["prompt"]
    valid, error, outputs, node_errors = await execution.validate_prompt(str(uuid.uuid4()), prompt, None)
    return web.json_response({"valid": valid, "error": error, "outputs": sorted(outputs), "node_errors": node_errors})
