"""The development harness shared by the tests, the demo, the benchmarks and the scripts. The pack itself
(``nodes/``, ``sae/``) never imports it.

- ``comfyui_locator``: find ComfyUI, import it in-process, register the pack as ``comfyui_sae_steering``
  (the one bootstrap, imported by path by the tests, the benchmarks and the scripts);
- ``comfyui_server``: a real ComfyUI server as a subprocess (end-to-end tests, the workflow builder);
- ``tiny_flux``, ``tiny_flux_nodes``: the tiny FLUX built as ComfyUI builds FLUX, its FLUX configs, and the
  ComfyUI nodes that build it (the e2e test pack and the demo register them);
- ``sae_factory``: random SAEs; ``e2e_models``: the files a test server needs (placeholders, a tiny SAE);
- ``workflow_api``: UI-format workflow -> API prompt; ``example_workflows``: the example workflows' descriptions.
"""
