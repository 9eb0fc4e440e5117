"""Test bench on the real ComfyUI v0.8.0, forced onto the CPU.

ComfyUI goes first on ``sys.path`` so that ``import nodes`` is ComfyUI's; the pack itself is
imported as the package ``comfyui_sae_steering``, the way ComfyUI imports a custom node folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The one bootstrap: the harness's locator, imported by path, registers the pack as ``comfyui_sae_steering``
# (with its ``harness``); every test imports the pack and the harness under that name. The helpers of the
# tests themselves (``sae_layouts``, ``server_harness``, ...) are modules of this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))
from comfyui_locator import PACK_ROOT, ComfyUINotFound, comfyui_version, locate_comfyui, start_comfyui  # noqa: E402

COMFYUI: Path | None = None


def pytest_configure(config):
    global COMFYUI
    try:
        COMFYUI = locate_comfyui()
    except ComfyUINotFound as err:
        raise pytest.UsageError(f"ComfyUI is required for the tests and was not found.\n{err}") from None
    start_comfyui(COMFYUI, cpu=True)


def pytest_report_header(config):
    return f"ComfyUI {comfyui_version(COMFYUI)} at {COMFYUI}"


@pytest.fixture
def tiny_flux():
    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux
    return build_tiny_flux(seed=0)


@pytest.fixture
def tiny_cond():
    from comfyui_sae_steering.harness.tiny_flux import tiny_conditioning
    return tiny_conditioning(seed=1), tiny_conditioning(seed=2)


def serve_e2e(base: Path, server_class=None):
    """Start a real ComfyUI server (``server_harness.ComfyServer`` or a subclass) with this pack and the
    test-only node pack in its custom_nodes, placeholder model files and a tiny SAE in ``base``; yield it
    and stop it afterwards (a generator for fixtures)."""
    from e2e_models import write_placeholders, write_tiny_sae
    from server_harness import ComfyServer

    write_placeholders(base)
    write_tiny_sae(base)
    server = (server_class or ComfyServer)(COMFYUI, base, {
        "ComfyUI-SAE-Steering": PACK_ROOT, "sae_e2e_test_nodes": Path(__file__).parent / "e2e_test_nodes"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """One real ComfyUI server for every end-to-end test (``serve_e2e``)."""
    yield from serve_e2e(tmp_path_factory.mktemp("comfyui_base"))


@pytest.fixture(scope="session")
def object_info(comfy_server):
    return comfy_server.get("/object_info")
