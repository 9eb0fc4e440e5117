"""The schema both embedding edit nodes share: source, ``sae``, ``target``, then the edit inputs."""
from __future__ import annotations

from comfy_api.latest import io

from ..comfy_types import SAEType
from ..steer.feature_spec import MODE_NAMES

# CLIP embeddings take large feature values: Gytis set feature 22420 to 40; 10-50 is the normal range
DEFAULT_STRENGTH = 40.0
STRENGTH_LIMIT = 10000.0


def _edit_inputs() -> list:
    return [
        io.String.Input("features", default="", placeholder="22420  or  22420:40, 17:-20",
                        tooltip="SAE feature indices, optionally index:strength; features without their own "
                                "strength use `strength`. Find indices with SAE Embedding Features."),
        io.Float.Input("strength", default=DEFAULT_STRENGTH, min=-STRENGTH_LIMIT, max=STRENGTH_LIMIT, step=0.5,
                       tooltip="The value used by `mode` (set: the new feature value; add: added to it; scale: "
                               "multiplies it). CLIP-scale values are large: 10-50 is normal."),
        io.Combo.Input("mode", options=MODE_NAMES, default="set",
                       tooltip="set: feature := strength (Gytis's recipe); add: += strength; scale: *= strength; "
                               "'where active' only touches vectors where the SAE finds the feature."),
        io.Boolean.Input("keep_error", default=True,
                         tooltip="Add back the SAE's reconstruction error, so only the chosen features change. "
                                 "Off: the output is the SAE's reconstruction of the edited features."),
    ]


def edit_node_schema(node_id: str, display_name: str, description: str, source: io.Input, targets: list[str],
                     target_tooltip: str, output: io.Output) -> io.Schema:
    """``source`` (the embedding container), ``sae``, ``target``, ``features``, ``strength``, ``mode``,
    ``keep_error``; outputs the edited container and the ``report`` STRING."""
    return io.Schema(
        node_id=node_id,
        display_name=display_name,
        category="sae_steering/embeddings",
        description=description,
        inputs=[source, SAEType.Input("sae"),
                io.Combo.Input("target", options=targets, default=targets[0], tooltip=target_tooltip),
                *_edit_inputs()],
        outputs=[output, io.String.Output(display_name="report")],
    )
