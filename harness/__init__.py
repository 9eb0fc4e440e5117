"""The development harness shared by the tests, the demo, the benchmarks and the scripts: finding and
starting ComfyUI and registering the pack as ``comfyui_sae_steering`` (``comfyui_locator``), the tiny
FLUX and its ComfyUI nodes (``tiny_flux``, ``tiny_flux_nodes``), random SAEs (``sae_factory``) and
converting workflows to the API format (``workflow_api``). The pack itself (``nodes/``, ``sae/``) never
imports it."""
