"""Pure-PyTorch sparse-autoencoder kernel: loading every public layout, encoding and steering.

Nothing in this package imports ComfyUI.
"""
from .autoencoder import SparseAutoencoder
from .edit import Edit
from .load import load_sae

__all__ = ["Edit", "SparseAutoencoder", "load_sae"]
