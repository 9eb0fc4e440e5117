"""Node ``SAEConditioningEdit``: edit SAE features of a conditioning's pooled vector or tokens."""
from __future__ import annotations

from comfy_api.latest import io

from .comfy_types import SAEType
from .embedding_edit import edit_embedding, edit_inputs, edits_from_inputs, report
from .embedding_targets import CONDITIONING_TARGETS, conditioning_tensors, replace_in_conditioning


class SAEConditioningEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEConditioningEdit",
            display_name="SAE Edit Conditioning",
            category="conditioning/sae",
            description="Encode the conditioning's pooled vector or tokens with an SAE, change the chosen "
                        "features, decode and add back the reconstruction error (Gytis Daujotas's recipe).",
            inputs=[
                io.Conditioning.Input("conditioning"),
                SAEType.Input("sae"),
                io.Combo.Input("target", options=CONDITIONING_TARGETS, default="pooled_output",
                               tooltip="pooled_output: each entry's pooled vector (CLIP-L 768-d for FLUX, "
                                       "CLIP-G 1280-d for SDXL); tokens: every token of the conditioning tensor."),
                *edit_inputs(),
            ],
            outputs=[
                io.Conditioning.Output(display_name="conditioning"),
                io.String.Output(display_name="report"),
            ],
        )

    @classmethod
    def execute(cls, conditioning, sae, target, features, strength, mode, keep_error) -> io.NodeOutput:
        edits = edits_from_inputs(sae, features, strength, mode)
        edited, sections = [], []
        for i, tensor in enumerate(conditioning_tensors(conditioning, target)):
            new, lines = edit_embedding(sae, tensor, edits, keep_error, f"conditioning entry {i} {target}")
            edited.append(new)
            sections.append((f"entry {i}", lines))
        title = f"SAE Edit Conditioning: {target}, mode {mode}, keep_error {'on' if keep_error else 'off'}"
        return io.NodeOutput(replace_in_conditioning(conditioning, target, edited), report(title, sections))
