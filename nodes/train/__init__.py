"""Training an SAE in ComfyUI: harvesting activations, the training node and its plot."""
