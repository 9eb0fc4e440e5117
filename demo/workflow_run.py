"""Run a saved example workflow (UI format) on real model files through ComfyUI's executor.

The workflow is converted to the API format exactly as the end-to-end tests do it
(``harness/workflow_api.py``), its loaders are pointed at the given files, optional overrides of
site, block, features and strength are applied, and what its output nodes produce (saved images,
the previewed plot and report) is copied into the output folder.
"""
from __future__ import annotations

import json
from pathlib import Path

from .headless import add_model_file, copy_outputs, import_from_harness, object_info, pack_module, run_prompt

# loader class -> {input name: (flag of the main job, ComfyUI model folder)}
LOADER_INPUTS = {
    "UNETLoader": {"unet_name": ("unet", "diffusion_models")},
    "DualCLIPLoader": {"clip_name1": ("clip_l", "text_encoders"), "clip_name2": ("t5", "text_encoders")},
    "VAELoader": {"vae_name": ("vae", "vae")},
}


def add_sae(path) -> str:
    """Make an SAE file, or a folder layout (config + weights), visible to Load SAE; returns its name there.
    The weights file of a folder is found as the pack's loader finds it (``sae/formats/detect.py``)."""
    path = pack_module("sae.formats.detect").find_weights(Path(path).expanduser().resolve())
    if any((path.parent / name).exists() for name in pack_module("sae.formats.configs").CONFIG_NAMES):
        # a folder layout is listed by Load SAE as "<folder>/<weights file>"
        add_model_file("sae", path.parent)
        return f"{path.parent.name}/{path.name}"
    return add_model_file("sae", path)


def prepare_prompt(workflow: dict, files: dict, overrides: dict) -> dict:
    """API prompt of ``workflow`` with its loaders on ``files`` and ``overrides`` (site, block,
    features, strength; None = keep the workflow's) applied to the measuring and steering nodes."""
    workflow_api = import_from_harness("workflow_api")
    kinds = {node["type"] for node in workflow["nodes"]} - workflow_api.FRONTEND_ONLY
    prompt = workflow_api.to_api(workflow, object_info(kinds))
    for node in prompt.values():
        inputs = node["inputs"]
        for name, (flag, folder) in LOADER_INPUTS.get(node["class_type"], {}).items():
            inputs[name] = add_model_file(folder, files[flag])
        if node["class_type"] == "SAELoader":
            inputs["sae_name"] = add_sae(files["sae"])
        if node["class_type"] in ("SAEActivationScale", "SAEFluxSteer"):
            for name in ("site", "block"):
                if overrides.get(name) is not None:
                    inputs[name] = overrides[name]
        if node["class_type"] == "SAEFluxSteer":
            if overrides.get("feature") is not None:
                inputs["features"] = str(overrides["feature"])
            if overrides.get("strength") is not None:
                inputs["strength"] = overrides["strength"]
    return prompt


def run_example_workflow(workflow_path: Path, files: dict, work: Path, out: Path, overrides: dict) -> list[str]:
    """Run the workflow; copy what its output nodes produced into ``out`` (see ``copy_outputs``)."""
    workflow = json.loads(Path(workflow_path).read_text(encoding="utf-8"))
    prompt = prepare_prompt(workflow, files, overrides)
    history = run_prompt(prompt)
    return copy_outputs(prompt, history, work, out)
