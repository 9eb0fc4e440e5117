"""Pure-PyTorch sparse-autoencoder kernel: loading every public layout, encoding and steering.

Nothing in this package imports ComfyUI.
"""
from .edit import Edit

__all__ = ["Edit"]
