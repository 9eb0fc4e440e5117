"""The pack's ComfyUI extension: the list of its nodes (V3 schema)."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io


class SAESteeringExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []


async def comfy_entrypoint() -> SAESteeringExtension:
    return SAESteeringExtension()
