"""SAELoader reads every kernel format from a temporary models/sae folder, and caches sanely."""
from __future__ import annotations

import os

import pytest
import torch

import folder_paths

from comfyui_sae_steering.nodes.sae_loader import SAE_EXTENSIONS, SAE_FOLDER, SAELoader, sae_choices
from comfyui_sae_steering.sae.convert import convert
from sae_layouts import ALL, activations


@pytest.fixture
def sae_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "sae"
    folder.mkdir(parents=True)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, SAE_FOLDER, ([str(folder)], set(SAE_EXTENSIONS)))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    return folder


def load(name, dtype="auto"):
    return SAELoader.execute(sae_name=name, dtype=dtype).result[0]


def listed_name(sae_dir, layout_path):
    """The name the combo shows: the file itself, or the weights file of a folder layout."""
    names = sae_choices()
    rel = os.path.relpath(layout_path, sae_dir).replace(os.sep, "/")
    matches = [n for n in names if n.replace(os.sep, "/") == rel or n.replace(os.sep, "/").startswith(rel + "/")]
    assert len(matches) == 1, (rel, names)
    return matches[0]


@pytest.mark.parametrize("name", sorted(ALL))
def test_loader_reads_every_format(sae_dir, name):
    layout = ALL[name](sae_dir / name)
    sae = load(listed_name(sae_dir, layout.path))
    x = activations()
    torch.testing.assert_close(sae.encode(x), layout.encode(x), rtol=1e-4, atol=1e-5)
    assert sae.arch == layout.arch and sae.k == layout.k


def test_loader_reads_the_single_file_format(sae_dir, tmp_path):
    layout = ALL["sparsify"](tmp_path / "src")
    convert(str(layout.path), str(sae_dir / "mine.safetensors"))
    sae = load("mine.safetensors")
    x = activations()
    torch.testing.assert_close(sae.encode(x), layout.encode(x), rtol=1e-4, atol=1e-5)


def test_same_file_is_reused_and_a_changed_file_reloaded(sae_dir, tmp_path):
    layout = ALL["sparsify"](tmp_path / "src")
    target = sae_dir / "mine.safetensors"
    convert(str(layout.path), str(target))
    first = load("mine.safetensors")
    assert load("mine.safetensors") is first
    fingerprint = SAELoader.fingerprint_inputs(sae_name="mine.safetensors", dtype="auto")
    other = ALL["sparsify"](tmp_path / "other", seed=7)
    convert(str(other.path), str(target))
    os.utime(target, ns=(1, os.stat(target).st_mtime_ns + 10**9))
    assert SAELoader.fingerprint_inputs(sae_name="mine.safetensors", dtype="auto") != fingerprint
    reloaded = load("mine.safetensors")
    assert reloaded is not first
    x = activations()
    torch.testing.assert_close(reloaded.encode(x), other.encode(x), rtol=1e-4, atol=1e-5)


def test_dtype_choice(sae_dir, tmp_path):
    layout = ALL["finebooru"](sae_dir / "krea")
    name = listed_name(sae_dir, layout.path)
    assert load(name, "bfloat16").dtype == torch.bfloat16
    assert load(name, "auto").dtype == torch.float32


def test_unknown_name_names_the_folder(sae_dir):
    with pytest.raises(FileNotFoundError, match=str(sae_dir)):
        load("missing.safetensors")
