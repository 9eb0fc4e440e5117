"""Start ComfyUI on the CPU for a Tiny World benchmark, one torch thread (the machine is shared)."""
from __future__ import annotations


def start_on_cpu() -> None:
    from demo.headless import import_from_harness
    locator = import_from_harness("comfyui_locator")
    locator.start_comfyui(locator.locate_comfyui(), cpu=True)
    import torch
    torch.set_num_threads(1)
