"""Node ``SAEClipVisionEdit``: edit SAE features of a CLIP-vision output's embeddings."""
from __future__ import annotations

from comfy_api.latest import io

from .comfy_types import SAEType
from .embedding_edit import edit_embedding, edit_inputs, edits_from_inputs, report
from .embedding_targets import CLIP_VISION_TARGETS, clip_vision_tensor, replace_in_clip_vision


class SAEClipVisionEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEClipVisionEdit",
            display_name="SAE Edit CLIP Vision",
            category="conditioning/sae",
            description="Edit SAE features of a CLIP-vision embedding (encode, change the features, decode, add "
                        "back the error). The output goes wherever the input did: unCLIPConditioning, style "
                        "models, IP-Adapter.",
            inputs=[
                io.ClipVisionOutput.Input("clip_vision_output"),
                SAEType.Input("sae"),
                io.Combo.Input("target", options=CLIP_VISION_TARGETS, default="image_embeds",
                               tooltip="image_embeds: the projected image embedding (ViT-bigG: 1280-d, what "
                                       "unCLIP/revision uses); the hidden states: every patch token."),
                *edit_inputs(),
            ],
            outputs=[
                io.ClipVisionOutput.Output(display_name="clip_vision_output"),
                io.String.Output(display_name="report"),
            ],
        )

    @classmethod
    def execute(cls, clip_vision_output, sae, target, features, strength, mode, keep_error) -> io.NodeOutput:
        edits = edits_from_inputs(sae, features, strength, mode)
        tensor = clip_vision_tensor(clip_vision_output, target)
        new, lines = edit_embedding(sae, tensor, edits, keep_error, f"clip_vision_output {target}")
        title = f"SAE Edit CLIP Vision: {target}, mode {mode}, keep_error {'on' if keep_error else 'off'}"
        return io.NodeOutput(replace_in_clip_vision(clip_vision_output, target, new), report(title, [("", lines)]))
