"""Node ``SAEEmbeddingFeatures``: which SAE features fire on a conditioning or CLIP-vision embedding.

The feature indices to put into SAE Edit Conditioning / SAE Edit CLIP Vision come from here.
Every vector of the target (pooled vectors, or every token of every entry) is encoded; features are
ranked by their mean value over those vectors, with their maximum and how often they fire (z > 0).
"""
from __future__ import annotations

import json

import torch
from comfy_api.latest import io

from ...sae.feature_stats import FeatureStats, rank_features
from ..comfy_types import SAEType
from ..scan.feature_measurements import remember
from .targets import (CLIP_VISION_TARGETS, CONDITIONING_TARGETS, check_width, clip_vision_tensor,
                                conditioning_tensors)


def feature_statistics(sae, tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-feature ``mean``, ``max`` and firing ``count`` over every vector of ``tensors``, plus ``vectors``."""
    stats = FeatureStats(sae.d_sae)  # accumulated from the sparse codes: no [vectors, d_sae] tensor
    for tensor in tensors:
        rows = tensor.detach().reshape(-1, tensor.shape[-1]).to(sae.device)  # encode works in fp32
        stats.add(*sae.encode_sparse(rows))
    if stats.tokens == 0:
        zeros = torch.zeros(sae.d_sae, device=sae.device)
        return {"mean": zeros, "max": zeros, "count": zeros.long(), "vectors": 0}
    return {"mean": stats.mean().float(), "max": stats.max.float(), "count": stats.fired, "vectors": stats.tokens}


def top_features(stats: dict, top_n: int) -> list[dict]:
    """The ``top_n`` features by mean value, leaving out features that never fire."""
    fired = int((stats["count"] > 0).sum())
    if fired == 0:
        return []
    # the Feature Scan's ranking (ties to the lower index); codes are >= 0, so a feature that fires has mean > 0
    indices = rank_features(stats["mean"], min(top_n, fired)).tolist()
    vectors = stats["vectors"]
    return [{"feature": f, "mean": float(stats["mean"][f]), "max": float(stats["max"][f]),
             "fires": int(stats["count"][f]), "frequency": int(stats["count"][f]) / vectors}
            for f in indices]


def _table(title: str, rows: list[dict], vectors: int) -> str:
    if not rows:
        return f"{title}\nno feature fires on these {vectors} vector(s)"
    lines = [title, f"{'rank':>4}  {'feature':>8}  {'mean':>10}  {'max':>10}  fires"]
    for rank, row in enumerate(rows, 1):
        lines.append(f"{rank:>4}  {row['feature']:>8}  {row['mean']:>10.4g}  {row['max']:>10.4g}  "
                     f"{row['fires']}/{vectors} ({100 * row['frequency']:.0f}%)")
    lines.append("features: " + ", ".join(str(row["feature"]) for row in rows))
    return "\n".join(lines)


class SAEEmbeddingFeatures(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAEEmbeddingFeatures",
            display_name="SAE Embedding Features",
            category="sae_steering/embeddings",
            description="List the SAE features that fire most on a conditioning's pooled vector or tokens, or on "
                        "a CLIP-vision output field, with their values: the indices to edit.",
            inputs=[
                SAEType.Input("sae"),
                io.Conditioning.Input("conditioning", optional=True,
                                      tooltip="Needed for the targets pooled_output and tokens."),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True,
                                          tooltip="Needed for the targets image_embeds and the hidden states."),
                io.Combo.Input("target", options=CONDITIONING_TARGETS + CLIP_VISION_TARGETS, default="pooled_output",
                               tooltip="Which embedding to encode. For tokens and hidden states, features are "
                                       "ranked by their mean over all tokens; 'fires' counts tokens where z > 0."),
                io.Int.Input("top_n", default=16, min=1, max=1000, tooltip="How many features to list."),
            ],
            outputs=[
                io.String.Output(display_name="features"),
                io.String.Output(display_name="values_json"),
            ],
        )

    @classmethod
    def execute(cls, sae, target, top_n, conditioning=None, clip_vision_output=None) -> io.NodeOutput:
        if target in CONDITIONING_TARGETS:
            if conditioning is None:
                raise ValueError(f"target {target!r} reads the `conditioning` input, which is not connected")
            tensors = conditioning_tensors(conditioning, target)
            names = [f"conditioning entry {i} {target}" for i in range(len(tensors))]
            source = f"conditioning {target} ({len(tensors)} entr{'y' if len(tensors) == 1 else 'ies'})"
        else:
            if clip_vision_output is None:
                raise ValueError(f"target {target!r} reads the `clip_vision_output` input, which is not connected")
            tensors = [clip_vision_tensor(clip_vision_output, target)]
            names = [f"clip_vision_output {target}"]
            source = f"clip_vision_output {target}"
        for tensor, name in zip(tensors, names):
            check_width(tensor, sae.d_in, name)
        stats = feature_statistics(sae, tensors)
        rows = top_features(stats, top_n)
        remember(sae, f"SAE Embedding Features on {source}", stats["vectors"], stats["mean"], stats["max"],
                 stats["count"])  # for the feature picker
        vectors = stats["vectors"]
        title = (f"SAE Embedding Features: {source}, {vectors} vector(s), "
                 f"top {len(rows)} of {sae.d_sae} features by mean")
        values = {"target": target, "vectors": vectors, "d_sae": sae.d_sae, "features": rows}
        return io.NodeOutput(_table(title, rows, vectors), json.dumps(values))
