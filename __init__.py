"""ComfyUI-SAE-Steering: steer image generation with sparse-autoencoder features.

ComfyUI loads this file as the pack's entry point. Outside ComfyUI (``comfy_api`` absent)
importing it does nothing, so the pure kernel in ``sae/`` stays usable anywhere.
"""
try:
    import comfy_api.latest  # noqa: F401  (probe only: are we inside ComfyUI?)
except ImportError:
    comfy_entrypoint = None
    WEB_DIRECTORY = None
else:
    from .nodes.extension import comfy_entrypoint
    WEB_DIRECTORY = "./web"  # the canvas's feature picker (plain JS, no build step)

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
