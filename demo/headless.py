"""Run API-format prompts through ComfyUI's own executor, headless, with this pack loaded as ComfyUI
loads a custom node (from a ``custom_nodes`` folder, through ``nodes.init_external_custom_nodes``).

``start_comfyui`` must run before anything imports ``comfy.model_management`` (it forces the CPU
unless told otherwise) and puts ComfyUI first on ``sys.path``: the pack has a ``nodes/`` package of
its own, and ``import nodes`` must find ComfyUI's.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
PACK_FOLDER_NAME = "ComfyUI-SAE-Steering"


class HeadlessServer:
    """What ``execution.PromptExecutor`` needs of ``PromptServer``: no client, messages kept."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))


class PromptFailed(RuntimeError):
    pass


def start_comfyui(comfyui: Path, work_dir: Path, cpu: bool = True) -> None:
    """Import ComfyUI from ``comfyui``, point its input/output/temp folders and the ``custom_nodes``
    folder into ``work_dir``, load ComfyUI's extra nodes and this pack. Idempotent per process."""
    import_from_harness("comfyui_locator").import_comfyui(comfyui, cpu)
    import folder_paths
    import nodes

    work_dir = Path(work_dir)
    for name in ("input", "output", "temp", "custom_nodes", "models/sae"):
        (work_dir / name).mkdir(parents=True, exist_ok=True)
    folder_paths.set_input_directory(str(work_dir / "input"))
    folder_paths.set_output_directory(str(work_dir / "output"))
    folder_paths.set_temp_directory(str(work_dir / "temp"))
    link = work_dir / "custom_nodes" / PACK_FOLDER_NAME
    if not link.exists():
        link.symlink_to(PACK_ROOT, target_is_directory=True)
    folder_paths.folder_names_and_paths["custom_nodes"] = ([str(work_dir / "custom_nodes")], set())
    if getattr(start_comfyui, "_loaded", False):
        return
    asyncio.run(_load_nodes(nodes))
    start_comfyui._loaded = True


async def _load_nodes(nodes) -> None:
    await nodes.init_public_apis()
    # ComfyUI's optional extras (audio, video) may lack their dependencies here; the demo needs none of
    # them, so their import warnings are kept out of its output
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        await nodes.init_builtin_extra_nodes()
    finally:
        root.setLevel(level)
    await nodes.init_external_custom_nodes()


def pack_module(submodule: str):
    """A module of this pack as ComfyUI loaded it (e.g. ``"nodes.sites.tap"``): one copy per process."""
    import importlib

    import nodes

    for module_dir in nodes.LOADED_MODULE_DIRS.values():
        if Path(module_dir).resolve() == PACK_ROOT:
            package = module_dir.replace(".", "_x_")  # how nodes.load_custom_node names a folder's module
            if package in sys.modules:
                return importlib.import_module(f"{package}.{submodule}")
    raise RuntimeError(f"the pack at {PACK_ROOT} is not loaded in ComfyUI (start_comfyui first)")


def import_from_harness(name: str):
    """A module of the development harness (``harness/<name>.py``), the demo's sibling package: under the
    pack (``comfyui_sae_steering.harness``) when the demo was imported so (tests, bench), else the
    top-level ``harness`` beside the top-level ``demo`` (``python -m demo.main_job`` from the root)."""
    import importlib

    parent = __package__.rpartition(".")[0]
    return importlib.import_module(f"{parent}.harness.{name}" if parent else f"harness.{name}")


def object_info(class_types) -> dict:
    """What ``GET /object_info`` serves for these node types (the fields the UI-to-API conversion reads)."""
    import nodes
    from comfy_api.internal import _ComfyNodeInternal

    require_nodes(*class_types)
    info = {}
    for kind in class_types:
        cls = nodes.NODE_CLASS_MAPPINGS[kind]
        if issubclass(cls, _ComfyNodeInternal):
            info[kind] = cls.GET_NODE_INFO_V1()
        else:
            inputs = cls.INPUT_TYPES()
            info[kind] = {"input": inputs, "input_order": {key: list(value) for key, value in inputs.items()}}
    return info


def add_model_file(folder_name: str, path: str | os.PathLike) -> str:
    """Make a model file visible to ComfyUI's loaders under ``folder_name``; returns the name to use."""
    import folder_paths

    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"model file for {folder_name!r} not found: {path}")
    folder_paths.add_model_folder_path(folder_name, str(path.parent), is_default=True)
    return path.name


def require_nodes(*node_ids: str) -> None:
    import nodes

    missing = [n for n in node_ids if n not in nodes.NODE_CLASS_MAPPINGS]
    if missing:
        raise PromptFailed(f"node types not registered in ComfyUI: {', '.join(missing)} (did the pack fail to "
                           "import? ComfyUI's log above says why)")


def run_prompt(prompt: dict, extra_data: dict | None = None) -> dict:
    """Validate ``prompt`` (API format) as the server does, execute it; returns the history entry
    (``outputs`` per output node). Raises ``PromptFailed`` naming the node on any error."""
    import execution

    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not valid:
        details = "; ".join(f"node {nid} ({prompt[nid]['class_type']}): "
                            + ", ".join(e.get("details") or e.get("message", "") for e in info["errors"])
                            for nid, info in node_errors.items())
        raise PromptFailed(f"prompt rejected by ComfyUI's validation: {error.get('message')} {details}".strip())
    server = HeadlessServer()
    executor = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC,
                                        cache_args={"lru": 0, "ram": 0})
    executor.execute(prompt, prompt_id, extra_data or {}, outputs)
    if not executor.success:
        failure = next((data for event, data in executor.status_messages if event == "execution_error"), {})
        raise PromptFailed(f"node {failure.get('node_id')} ({failure.get('node_type')}) failed: "
                           f"{failure.get('exception_type')}: {failure.get('exception_message')}\n"
                           + "".join(failure.get("traceback", [])))
    return executor.history_result


def copy_outputs(prompt: dict, history: dict, work_dir: Path, out: Path) -> list[str]:
    """Copy what the output nodes of a run produced (images from ``work_dir``'s output/temp folders,
    texts from PreviewAny) into ``out`` under readable names (``output_name``); returns the names."""
    written = []
    for node_id, output in sorted(history["outputs"].items()):
        name = output_name(prompt, node_id)
        for image in output.get("images", []):
            folder = Path(work_dir) / ("output" if image.get("type") == "output" else "temp") / image.get("subfolder", "")
            shutil.copyfile(folder / image["filename"], Path(out) / f"{name}.png")
            written.append(f"{name}.png")
        for text in output.get("text", []):
            (Path(out) / f"{name}.txt").write_text(str(text) + "\n", encoding="utf-8")
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
