"""Where an embedding lives in a CONDITIONING or a CLIP_VISION_OUTPUT: read it, and write an edited copy.

Both writers build new containers (ComfyUI caches node outputs and hands the same objects to
other nodes): a new list, new entry lists and dicts, a new CLIP-vision output object; everything
but the target is carried over as the same objects.
"""
from __future__ import annotations

import copy

import torch

# conditioning entry: [tokens, {"pooled_output": ..., ...}]
CONDITIONING_TARGETS = ["pooled_output", "tokens"]
# attributes of comfy.clip_vision.Output
CLIP_VISION_TARGETS = ["image_embeds", "last_hidden_state", "penultimate_hidden_states"]


def conditioning_tensors(conditioning, target: str, input_name: str = "conditioning") -> list[torch.Tensor]:
    """The target tensor of every entry: ``[B, D]`` pooled vectors or ``[B, N, D]`` tokens."""
    if target not in CONDITIONING_TARGETS:
        raise ValueError(f"target {target!r} is not a conditioning field; use one of {', '.join(CONDITIONING_TARGETS)}")
    if not isinstance(conditioning, (list, tuple)) or not conditioning:
        raise ValueError(f"{input_name} is empty or not a CONDITIONING list")
    tensors = []
    for i, entry in enumerate(conditioning):
        if target == "tokens":
            tensor = entry[0]
        else:
            tensor = entry[1].get(target)
            if tensor is None:
                keys = ", ".join(sorted(entry[1])) or "none"
                raise ValueError(f"{input_name} entry {i} has no {target!r} (its keys: {keys}); "
                                 f"pick target 'tokens' or a text encoder that gives a pooled output")
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{input_name} entry {i}: {target!r} is not a tensor ({type(tensor).__name__})")
        tensors.append(tensor)
    return tensors


def replace_in_conditioning(conditioning, target: str, tensors: list[torch.Tensor]) -> list:
    """A new CONDITIONING with entry i's target replaced by ``tensors[i]``."""
    edited = []
    for entry, tensor in zip(conditioning, tensors, strict=True):
        tokens, options = entry[0], dict(entry[1])
        if target == "tokens":
            tokens = tensor
        else:
            options[target] = tensor
        edited.append([tokens, options, *entry[2:]])
    return edited


def clip_vision_tensor(output, target: str, input_name: str = "clip_vision_output") -> torch.Tensor:
    """One field of a CLIP-vision output: ``image_embeds [B, D]`` or hidden states ``[B, N, D]``."""
    if target not in CLIP_VISION_TARGETS:
        raise ValueError(f"target {target!r} is not a CLIP-vision field; use one of {', '.join(CLIP_VISION_TARGETS)}")
    tensor = getattr(output, target, None)
    if not isinstance(tensor, torch.Tensor):
        present = [name for name in CLIP_VISION_TARGETS if isinstance(getattr(output, name, None), torch.Tensor)]
        has = f"it has {', '.join(present)}" if present else f"it has none of {', '.join(CLIP_VISION_TARGETS)}"
        raise ValueError(f"{input_name} has no {target!r} tensor ({has}); pick another target")
    return tensor


def replace_in_clip_vision(output, target: str, tensor: torch.Tensor):
    """A new output of the same class, every attribute shared with ``output`` except ``target``."""
    edited = copy.copy(output)  # shallow: a new object, the same attribute values
    setattr(edited, target, tensor)
    return edited


def check_width(tensor: torch.Tensor, d_in: int, what: str) -> None:
    """The SAE reads vectors of width ``d_in``; say which field and which widths when they differ."""
    if tensor.ndim == 0 or tensor.shape[-1] != d_in:
        width = tensor.shape[-1] if tensor.ndim else "scalar"
        raise ValueError(f"{what} is {width}-d (shape {list(tensor.shape)}) but the SAE reads {d_in}-d vectors: "
                         f"use an SAE trained on this embedding")
