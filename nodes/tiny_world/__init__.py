"""Tiny World: a small text-to-image world (coloured shapes) with a trained tiny FLUX, VAE, text encoder
and SAE, so that steering can be seen and measured on a CPU in seconds."""
