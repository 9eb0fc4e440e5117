"""Helpers for the main-job demo and the tests: a tiny FLUX built the way ComfyUI builds FLUX."""
