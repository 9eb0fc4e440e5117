"""Run a saved example workflow (UI format) on real model files through ComfyUI's executor.

The workflow is converted to the API format exactly as the end-to-end tests do it
(``tests/workflow_api.py``), its loaders are pointed at the given files, optional overrides of
site, block, features and strength are applied, and what its output nodes produce (saved images,
the previewed plot and report) is copied into the output folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .headless import add_model_file, import_from_tests, object_info, run_prompt

# loader class -> {input name: (flag of the main job, ComfyUI model folder)}
LOADER_INPUTS = {
    "UNETLoader": {"unet_name": ("unet", "diffusion_models")},
    "DualCLIPLoader": {"clip_name1": ("clip_l", "text_encoders"), "clip_name2": ("t5", "text_encoders")},
    "VAELoader": {"vae_name": ("vae", "vae")},
}
SAE_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
SAE_CONFIGS = ("config.json", "cfg.json")


def add_sae(path) -> str:
    """Make an SAE file, or a folder layout (config + weights), visible to Load SAE; returns its name there."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        weights = sorted(p for p in path.iterdir() if p.suffix in SAE_WEIGHT_SUFFIXES)
        if not weights:
            raise FileNotFoundError(f"SAE folder {path} holds no weights file ({', '.join(SAE_WEIGHT_SUFFIXES)})")
        path = weights[0]
    if any((path.parent / name).exists() for name in SAE_CONFIGS):
        # a folder layout is listed by Load SAE as "<folder>/<weights file>"
        add_model_file("sae", path.parent)
        return f"{path.parent.name}/{path.name}"
    return add_model_file("sae", path)


def prepare_prompt(workflow: dict, files: dict, overrides: dict) -> dict:
    """API prompt of ``workflow`` with its loaders on ``files`` and ``overrides`` (site, block,
    features, strength; None = keep the workflow's) applied to the measuring and steering nodes."""
    workflow_api = import_from_tests("workflow_api")
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
    """Run the workflow; copy its images (named after their filename prefix), previewed images and texts to ``out``."""
    workflow = json.loads(Path(workflow_path).read_text(encoding="utf-8"))
    prompt = prepare_prompt(workflow, files, overrides)
    history = run_prompt(prompt)
    written = []
    for node_id, output in sorted(history["outputs"].items()):
        name = output_name(prompt, node_id)
        for image in output.get("images", []):
            folder = work / ("output" if image.get("type") == "output" else "temp") / image.get("subfolder", "")
            shutil.copyfile(folder / image["filename"], out / f"{name}.png")
            written.append(f"{name}.png")
        for text in output.get("text", []):
            (out / f"{name}.txt").write_text(str(text) + "\n", encoding="utf-8")
            written.append(f"{name}.txt")
    return written


def output_name(prompt: dict, node_id: str) -> str:
    """File name (no suffix) for an output node: a SaveImage's prefix ("sae_steer/steered" -> steered),
    scale_plot / scale_report for previews of Measure Activation Scale, else type and id."""
    node = prompt[node_id]
    if node["class_type"] == "SaveImage":
        return Path(node["inputs"]["filename_prefix"]).name
    sources = [v for v in node["inputs"].values() if isinstance(v, list) and len(v) == 2]
    if len(sources) == 1 and prompt[sources[0][0]]["class_type"] == "SAEActivationScale":
        return "scale_plot" if node["class_type"] == "PreviewImage" else "scale_report"
    return f"{node['class_type']}_{node_id}"
