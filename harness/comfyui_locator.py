"""Find the ComfyUI checkout the tests run against (pinned reference: v0.8.0).

Order: $COMFYUI_PATH (must be a ComfyUI checkout, else fail); the ComfyUI that contains this
pack when it sits in ``ComfyUI/custom_nodes/``; the cache folder; failing all three, a shallow
clone of v0.8.0 into the cache. Nothing is ever silently skipped: no ComfyUI means an error.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

PINNED_TAG = "v0.8.0"
PINNED_COMMIT = "fc0cb10bcbee6e73ed3caf34c27f7bde4559a07f"
UPSTREAM = "https://github.com/comfyanonymous/ComfyUI"
PACK_ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "comfyui_sae_steering"

HOW_TO_PROVIDE = (
    "Provide ComfyUI v0.8.0 in one of these ways:\n"
    "  - set COMFYUI_PATH to a ComfyUI checkout;\n"
    "  - clone this pack into ComfyUI/custom_nodes/;\n"
    f"  - put a checkout at {{cache}} (e.g. git clone --depth 1 --branch {PINNED_TAG} {UPSTREAM} {{cache}})."
)


class ComfyUINotFound(RuntimeError):
    pass


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "comfyui-sae-steering" / "ComfyUI-0.8.0"


def is_comfyui(path: Path) -> bool:
    return (path / "comfy" / "model_patcher.py").is_file() and (path / "folder_paths.py").is_file() \
        and (path / "comfy_api").is_dir()


def comfyui_version(path: Path) -> str:
    version_file = path / "comfyui_version.py"
    if version_file.is_file():
        for line in version_file.read_text().splitlines():
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


def _clone_into(dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["git", "clone", "--quiet", "--depth", "1", "--branch", PINNED_TAG, UPSTREAM, str(dest)]
    try:
        subprocess.run(cmd, check=True, timeout=600, stdin=subprocess.DEVNULL,
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.SubprocessError) as err:
        raise ComfyUINotFound(f"could not clone ComfyUI {PINNED_TAG} into {dest}: {err}") from err


def locate_comfyui(allow_clone: bool = True) -> Path:
    cache = cache_dir()
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser().resolve()
        if not is_comfyui(path):
            raise ComfyUINotFound(f"COMFYUI_PATH={env} is not a ComfyUI checkout (no comfy/model_patcher.py, "
                                  f"folder_paths.py and comfy_api/ there).\n" + HOW_TO_PROVIDE.format(cache=cache))
        return path
    if PACK_ROOT.parent.name == "custom_nodes" and is_comfyui(PACK_ROOT.parent.parent):
        return PACK_ROOT.parent.parent
    if is_comfyui(cache):
        return cache
    if allow_clone and not (cache.exists() and any(cache.iterdir())):
        try:
            _clone_into(cache)
        except ComfyUINotFound as err:
            raise ComfyUINotFound(f"{err}\n" + HOW_TO_PROVIDE.format(cache=cache)) from err
        if is_comfyui(cache):
            return cache
    raise ComfyUINotFound("no ComfyUI found (COMFYUI_PATH unset, pack not inside ComfyUI/custom_nodes, "
                          f"nothing usable at {cache}).\n" + HOW_TO_PROVIDE.format(cache=cache))


def register_pack():
    """Import the pack as the package ``comfyui_sae_steering``, the way ComfyUI imports a custom node folder
    (under a fixed name here): the one import name of the pack in the tests, the benchmarks and the scripts.
    Idempotent. Needs no ComfyUI: without it the entry point is None and ``sae/`` and ``harness/`` work."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, PACK_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    # this module, imported by path to bootstrap, is the pack's harness.comfyui_locator too: one copy
    importlib.import_module(f"{PACK_NAME}.harness")
    sys.modules.setdefault(f"{PACK_NAME}.harness.comfyui_locator", sys.modules[__name__])
    return module


def import_comfyui(comfyui: Path, cpu: bool = True) -> None:
    """Put ``comfyui`` first on ``sys.path`` (the pack has a ``nodes/`` package of its own, and ``import nodes``
    must find ComfyUI's), choose its device and import it: what every in-process use of ComfyUI does first."""
    comfyui = str(Path(comfyui).resolve())
    if comfyui in sys.path:
        sys.path.remove(comfyui)
    sys.path.insert(0, comfyui)
    stale = sys.modules.get("nodes")
    if stale is not None and not hasattr(stale, "NODE_CLASS_MAPPINGS"):
        raise RuntimeError(f"'nodes' was imported from {getattr(stale, '__file__', '?')} before ComfyUI's: "
                           "ComfyUI must be imported first")
    from comfy.cli_args import args
    args.cpu = cpu  # before comfy.model_management is imported anywhere
    import comfy.model_management  # noqa: F401
    import nodes  # noqa: F401  (ComfyUI's own)


def start_comfyui(comfyui: Path, cpu: bool = True):
    """ComfyUI imported (``import_comfyui``), then the pack as ``comfyui_sae_steering`` (``register_pack``).
    Returns the pack's module."""
    import_comfyui(comfyui, cpu)
    pack = register_pack()
    if pack.comfy_entrypoint is None:  # registered before ComfyUI was importable: run its entry point again
        pack.__spec__.loader.exec_module(pack)
    return pack


if __name__ == "__main__":
    try:
        found = locate_comfyui()
    except ComfyUINotFound as err:
        sys.exit(f"error: {err}")
    sys.stdout.write(f"{found}\n")
