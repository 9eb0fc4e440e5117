"""The main-job demo (``python -m demo.main_job``, run by ``scripts/demo``): the pack run headless through
ComfyUI's executor. The tiny FLUX it samples lives in the development harness (``harness/``)."""
