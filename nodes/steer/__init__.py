"""Steering nodes and their callbacks: SAE Steer FLUX, SAE Erase Concept, the features/mode inputs."""
