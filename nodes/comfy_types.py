"""The pack's own ComfyUI socket types."""
from comfy_api.latest import io

SAEType = io.Custom("SAE")            # a sae.SparseAutoencoder
SAEScaleType = io.Custom("SAE_SCALE")  # measured activation statistics (nodes/activation_scale...)
SAEScanType = io.Custom("SAE_SCAN")    # feature-scan results
