"""The pack's ComfyUI extension: the list of its nodes (V3 schema)."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .embedding.clip_vision_edit_node import SAEClipVisionEdit
from .embedding.conditioning_edit_node import SAEConditioningEdit
from .embedding.features_node import SAEEmbeddingFeatures
from .measure.activation_scale_node import SAEActivationScale
from .sae_loader import SAELoader
from .scan.feature_contrast_node import SAEFeatureContrast
from .scan.feature_route import register_with_server
from .scan.feature_scan_node import SAEFeatureScan
from .scan.image_scan_node import SAEImageFeatureScan
from .steer.concept_erase_node import SAEConceptErase
from .steer.flux_steer_node import SAEFluxSteer
from .steer.sae_steer_node import SAESteer
from .tiny_world.loader_node import TinyWorldLoader
from .train.harvest_node import SAEHarvestActivations
from .train.train_node import SAETrain

NODES: list[type[io.ComfyNode]] = [
    SAELoader,
    SAEFluxSteer,
    SAESteer,
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
