"""Node ``SAEConditioningEdit``: edit SAE features of a conditioning's pooled vector or tokens."""
from __future__ import annotations

from comfy_api.latest import io

from .edit import edit_embeddings
from .edit_schema import edit_node_schema
from .targets import CONDITIONING_TARGETS, conditioning_tensors, replace_in_conditioning


class SAEConditioningEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return edit_node_schema(
            "SAEConditioningEdit", "SAE Edit Conditioning",
            "Encode the conditioning's pooled vector or tokens with an SAE, change the chosen features, decode "
            "and add back the reconstruction error (Gytis Daujotas's recipe).",
            io.Conditioning.Input("conditioning"), CONDITIONING_TARGETS,
            "pooled_output: each entry's pooled vector (CLIP-L 768-d for FLUX, CLIP-G 1280-d for SDXL); "
            "tokens: every token of the conditioning tensor (T5 4096-d for FLUX).",
            io.Conditioning.Output(display_name="conditioning"))

    @classmethod
    def execute(cls, conditioning, sae, target, features, strength, mode, keep_error) -> io.NodeOutput:
        parts = [(f"entry {i}", f"conditioning entry {i} {target}", tensor)
                 for i, tensor in enumerate(conditioning_tensors(conditioning, target))]
        edited, report = edit_embeddings(sae, parts, features, strength, mode, keep_error,
                                         f"SAE Edit Conditioning: {target}")
        return io.NodeOutput(replace_in_conditioning(conditioning, target, edited), report)
