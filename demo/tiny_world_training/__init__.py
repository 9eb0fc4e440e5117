"""Training Tiny World's models (VAE, text encoder + FLUX, SAE): ``python -m demo.tiny_world_training``."""
