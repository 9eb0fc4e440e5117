"""Test bench on the real ComfyUI v0.8.0, forced onto the CPU.

ComfyUI goes first on ``sys.path`` so that ``import nodes`` is ComfyUI's; the pack itself is
imported as the package ``comfyui_sae_steering``, the way ComfyUI imports a custom node folder.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfyui_locator import PACK_ROOT, ComfyUINotFound, comfyui_version, locate_comfyui  # noqa: E402

PACK_NAME = "comfyui_sae_steering"
COMFYUI: Path | None = None


def _import_pack():
    spec = importlib.util.spec_from_file_location(PACK_NAME, PACK_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    # The repository root holds __init__.py, so pytest imports it for its Package node; when the folder's
    # name is no identifier (a clone named ComfyUI-SAE-Steering) it asks for a top-level module "__init__",
    # whose relative imports fail. Hand it the pack, imported properly here.
    if not PACK_ROOT.name.isidentifier():
        sys.modules["__init__"] = module
    spec.loader.exec_module(module)
    return module


def pytest_configure(config):
    global COMFYUI
    try:
        COMFYUI = locate_comfyui()
    except ComfyUINotFound as err:
        raise pytest.UsageError(f"ComfyUI is required for the tests and was not found.\n{err}") from None
    sys.path.insert(0, str(COMFYUI))
    from comfy.cli_args import args
    args.cpu = True  # before comfy.model_management is imported anywhere
    import comfy.model_management  # noqa: F401
    import nodes  # noqa: F401  (ComfyUI's own)
    _import_pack()


def pytest_report_header(config):
    return f"ComfyUI {comfyui_version(COMFYUI)} at {COMFYUI}"


@pytest.fixture
def tiny_flux():
    from comfyui_sae_steering.demo.tiny_flux import build_tiny_flux
    return build_tiny_flux(seed=0)


@pytest.fixture
def tiny_cond():
    from comfyui_sae_steering.demo.tiny_flux import tiny_conditioning
    return tiny_conditioning(seed=1), tiny_conditioning(seed=2)


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """One real ComfyUI server for every end-to-end test: this pack plus the test-only node pack in
    its custom_nodes, placeholder model files and a tiny SAE in its temporary base folder."""
    from e2e_models import write_placeholders, write_tiny_sae
    from server_harness import ComfyServer

    base = tmp_path_factory.mktemp("comfyui_base")
    write_placeholders(base)
    write_tiny_sae(base)
    server = ComfyServer(COMFYUI, base, {"ComfyUI-SAE-Steering": PACK_ROOT,
                                         "sae_e2e_test_nodes": Path(__file__).parent / "e2e_test_nodes"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def object_info(comfy_server):
    return comfy_server.get("/object_info")
