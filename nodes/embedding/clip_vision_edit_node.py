"""Node ``SAEClipVisionEdit``: edit SAE features of a CLIP-vision output's embeddings."""
from __future__ import annotations

from comfy_api.latest import io

from .edit import edit_embeddings
from .edit_schema import edit_node_schema
from .targets import CLIP_VISION_TARGETS, clip_vision_tensor, replace_in_clip_vision


class SAEClipVisionEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return edit_node_schema(
            "SAEClipVisionEdit", "SAE Edit CLIP Vision",
            "Edit SAE features of a CLIP-vision embedding (encode, change the features, decode, add back the "
            "error). The output goes wherever the input did: unCLIPConditioning, style models, IP-Adapter.",
            io.ClipVisionOutput.Input("clip_vision_output"), CLIP_VISION_TARGETS,
            "image_embeds: the projected image embedding (ViT-bigG: 1280-d, what unCLIP/revision uses); "
            "the hidden states: every patch token.",
            io.ClipVisionOutput.Output(display_name="clip_vision_output"))

    @classmethod
    def execute(cls, clip_vision_output, sae, target, features, strength, mode, keep_error) -> io.NodeOutput:
        tensor = clip_vision_tensor(clip_vision_output, target)
        (edited,), report = edit_embeddings(sae, [("", f"clip_vision_output {target}", tensor)], features, strength,
                                            mode, keep_error, f"SAE Edit CLIP Vision: {target}")
        return io.NodeOutput(replace_in_clip_vision(clip_vision_output, target, edited), report)
