"""The main-job demo (``python -m demo.main_job``, run by ``scripts/demo``) and helpers the tests share:
a tiny FLUX built the way ComfyUI builds FLUX."""
