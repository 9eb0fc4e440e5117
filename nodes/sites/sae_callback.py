"""Base of the tap callbacks that hold an SAE: shared by reference, following the model's device."""
from __future__ import annotations

import torch


class SAECallback:
    """Clones of a patched model share the callback (and its SAE): never deep-copied. When ComfyUI
    moves the model, the SAE follows to the device but never to the model's dtype (maybe fp8).
    ``sae`` may be None for a callback that records without one."""

    def __init__(self, sae):
        self.sae = sae

    def __deepcopy__(self, memo):
        return self

    def to(self, device):
        if self.sae is not None and not isinstance(device, torch.dtype):
            self.sae.to(device)
        return self

    def follow(self, activations: torch.Tensor):
        """Put the SAE where the activations are (a model may run on another device than it loaded)."""
        if self.sae is not None and self.sae.device != activations.device:
            self.sae.to(activations.device)
