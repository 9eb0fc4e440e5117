"""Editing embeddings outside the model: SAE Edit Conditioning, SAE Edit CLIP Vision, Embedding Features."""
