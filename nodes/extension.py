"""The pack's ComfyUI extension: the list of its nodes (V3 schema)."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .activation_scale_node import SAEActivationScale
from .clip_vision_edit import SAEClipVisionEdit
from .concept_erase_node import SAEConceptErase
from .conditioning_edit import SAEConditioningEdit
from .embedding_features import SAEEmbeddingFeatures
from .feature_contrast_node import SAEFeatureContrast
from .feature_route import register_with_server
from .feature_scan_node import SAEFeatureScan
from .flux_steer_node import SAEFluxSteer
from .harvest_node import SAEHarvestActivations
from .image_scan_node import SAEImageFeatureScan
from .sae_loader import SAELoader
from .tiny_world.loader_node import TinyWorldLoader
from .train_node import SAETrain

NODES: list[type[io.ComfyNode]] = [
    SAELoader,
    SAEFluxSteer,
    SAEActivationScale,
    SAEConditioningEdit,
    SAEClipVisionEdit,
    SAEEmbeddingFeatures,
    SAEFeatureScan,
    SAEFeatureContrast,
    SAEConceptErase,
    SAEImageFeatureScan,
    SAEHarvestActivations,
    SAETrain,
    TinyWorldLoader,
]

register_with_server()  # GET /sae_steering/features, for the canvas's feature picker (web/)


class SAESteeringExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> SAESteeringExtension:
    return SAESteeringExtension()
