"""The pack's shape: pure kernel, guarded entry point, loud failure without ComfyUI."""
import os
import subprocess
import sys
import tomllib

from comfyui_sae_steering.harness.comfyui_locator import PACK_ROOT

CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMFYUI_PATH")}


def run(args, **env):
    return subprocess.run(args, cwd=PACK_ROOT, env={**CLEAN_ENV, **env}, capture_output=True, text=True,
                          timeout=300)


def test_sae_imports_without_comfyui():
    code = "import sys, sae; assert not any(m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths') for m in sys.modules)"
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr


def test_entry_point_is_quiet_without_comfyui():
    code = ("import importlib.util; s = importlib.util.spec_from_file_location('pack', '__init__.py',"
            " submodule_search_locations=['.']); m = importlib.util.module_from_spec(s); s.loader.exec_module(m);"
            " assert m.comfy_entrypoint is None")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_pack_registers_through_v3_entry_point():
    import asyncio

    import comfyui_sae_steering
    from comfy_api.latest import ComfyExtension

    extension = asyncio.run(comfyui_sae_steering.comfy_entrypoint())
    assert isinstance(extension, ComfyExtension)


def test_bad_comfyui_path_fails_the_test_command(tmp_path):
    result = run([sys.executable, "-m", "pytest", "-q", "tests/node/test_bench.py"], COMFYUI_PATH=str(tmp_path))
    assert result.returncode != 0
    assert "is not a ComfyUI checkout" in result.stdout + result.stderr


def test_no_comfyui_anywhere_fails_with_instructions(tmp_path):
    # an empty-but-present cache folder and no COMFYUI_PATH: nothing to find, nothing to clone into
    cache = tmp_path / "comfyui-sae-steering" / "ComfyUI-0.8.0"
    cache.mkdir(parents=True)
    (cache / "junk").write_text("")
    result = run([sys.executable, "harness/comfyui_locator.py"], XDG_CACHE_HOME=str(tmp_path))
    assert result.returncode != 0
    assert "COMFYUI_PATH" in result.stderr and str(cache) in result.stderr


def test_pyproject_fits_the_registry():
    meta = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())
    deps = meta["project"]["dependencies"]
    assert not any(d.lower().startswith("torch") for d in deps)
    assert meta["tool"]["comfy"]["requires-comfyui"] == ">=0.8.0"
    assert (PACK_ROOT / "LICENSE").is_file()
