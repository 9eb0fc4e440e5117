"""Test bench on the real ComfyUI v0.8.0, forced onto the CPU, in three folders by what a test needs:

- ``kernel/``: the pure maths and files of ``sae/`` (and the node-free feature syntax): no ComfyUI is started;
- ``node/``: the pack's nodes called in this process on the real ComfyUI (tiny FLUX, real sampling);
- ``e2e/``: a real ComfyUI server, the browser, the main job and the packaging in subprocesses.

Each folder's tests carry its name as a marker (``-m kernel``, ``-m "not e2e"``). ComfyUI is located and
started (first on ``sys.path``, so that ``import nodes`` is ComfyUI's) just before the first test file
outside ``kernel/`` is imported, so ``bash scripts/test tests/kernel`` or ``-m kernel`` never starts it.
The pack is imported as the package ``comfyui_sae_steering``, the way ComfyUI imports a custom node folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The one bootstrap: the harness's locator, imported by path, registers the pack as ``comfyui_sae_steering``
# (with its ``harness``); every test imports the pack and the harness under that name. The helpers of the
# tests themselves (``sae_layouts``, ``browser_harness``, ...) are modules of this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))
from comfyui_locator import (PACK_ROOT, ComfyUINotFound, comfyui_version, locate_comfyui,  # noqa: E402
                             register_pack, start_comfyui)

TESTS = Path(__file__).resolve().parent
KINDS = {
    "kernel": "sae/ maths and files only: runs without ComfyUI",
    "node": "the pack's nodes in this process on the real ComfyUI",
    "e2e": "a real ComfyUI server, the browser or a subprocess",
}
COMFYUI: Path | None = None


def kind_of(path) -> str | None:
    """The folder (= marker) a test path belongs to, or None for anything else."""
    try:
        top = Path(path).resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return top if top in KINDS else None


def ensure_comfyui() -> Path:
    """Locate and start ComfyUI once per session (the tests outside ``kernel/`` import it at the top)."""
    global COMFYUI
    if COMFYUI is None:
        try:
            found = locate_comfyui()
        except ComfyUINotFound as err:
            raise pytest.UsageError(f"ComfyUI is required for these tests and was not found.\n{err}") from None
        start_comfyui(found, cpu=True)
        COMFYUI = found
    return COMFYUI


def pytest_configure(config):
    for kind, meaning in KINDS.items():
        config.addinivalue_line("markers", f"{kind}: {meaning}")
    register_pack()  # enough for the kernel tests; ensure_comfyui completes it


def pytest_report_header(config):
    try:
        found = locate_comfyui(allow_clone=False)
    except ComfyUINotFound:
        return "ComfyUI not found (started only for tests outside kernel/)"
    return f"ComfyUI {comfyui_version(found)} at {found} (started only for tests outside kernel/)"


def _ruled_out(kind: str, markexpr: str) -> bool:
    """Whether ``-m markexpr`` deselects every test of a folder, known by its marker alone."""
    from _pytest.mark.expression import Expression

    try:
        return not Expression.compile(markexpr).evaluate(lambda name, **kwargs: name == kind)
    except Exception:  # an expression this cannot judge: collect the folder and let -m deselect
        return False


def pytest_ignore_collect(collection_path, config):
    # a folder that -m rules out is not even imported, so -m kernel needs no ComfyUI
    kind = kind_of(collection_path)
    markexpr = config.getoption("markexpr")
    if kind and markexpr and Path(collection_path).resolve() == TESTS / kind and _ruled_out(kind, markexpr):
        return True
    return None


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("test_") and kind_of(file_path) != "kernel":
        ensure_comfyui()  # before the test file is imported


def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = kind_of(item.path)
        if kind:
            item.add_marker(kind)


@pytest.fixture(scope="module", params=["SDXL", "SD15"])
def tiny_unet(request):
    """(family, ModelPatcher) for each UNet family the pack hooks."""
    from comfyui_sae_steering.harness.tiny_unet import build_tiny_unet
    return request.param, build_tiny_unet(request.param, seed=0)


@pytest.fixture(scope="session")
def tiny_dit():
    """``tiny_dit(name)``: the tiny model ``harness/tiny_dit.TINY_DITS[name]`` (weights from seed 0), built once per
    session and shared: the tests patch only clones of it, and check that."""
    import functools

    from comfyui_sae_steering.harness.tiny_dit import build_tiny_dit
    return functools.cache(lambda name: build_tiny_dit(name, seed=0))


@pytest.fixture
def tiny_flux():
    from comfyui_sae_steering.harness.tiny_flux import build_tiny_flux
    return build_tiny_flux(seed=0)


@pytest.fixture
def tiny_cond():
    from comfyui_sae_steering.harness.tiny_flux import tiny_conditioning
    return tiny_conditioning(seed=1), tiny_conditioning(seed=2)


def serve_e2e(base: Path, server_class=None):
    """Start a real ComfyUI server (``harness/comfyui_server.ComfyServer`` or a subclass) with this pack and the
    test-only node pack in its custom_nodes, placeholder model files and a tiny SAE in ``base``; yield it
    and stop it afterwards (a generator for fixtures)."""
    from comfyui_sae_steering.harness.e2e_models import write_placeholders, write_tiny_sae
    from comfyui_sae_steering.harness.comfyui_server import ComfyServer

    write_placeholders(base)
    write_tiny_sae(base)
    server = (server_class or ComfyServer)(ensure_comfyui(), base, {
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
