"""The development harness shared by the tests, the demo, the benchmarks and the scripts: finding and
starting ComfyUI (``comfyui_locator``) and converting workflows to the API format (``workflow_api``).
The pack itself (``nodes/``, ``sae/``) never imports it."""
