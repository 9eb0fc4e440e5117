"""Which layout is this path? The one place that finds the weights file and picks its reader."""
from __future__ import annotations

from pathlib import Path

from . import finebooru, gytis, openai, pack, saelens, sparsify, unbox
from .configs import sidecar_config
from .sources import WEIGHT_SUFFIXES, open_weights
from .spec import SAESpec

# Tried in this order; the pack's file is recognised by its metadata, the others by their tensor names.
READERS = (pack, finebooru, sparsify, saelens, unbox, openai, gytis)
# Folder layouts: the weights file name each library writes.
FOLDER_WEIGHTS = (sparsify.WEIGHTS_FILE, saelens.WEIGHTS_FILE, finebooru.WEIGHTS_FILE, unbox.WEIGHTS_FILE)


def known_layouts() -> str:
    return "\n".join(f"  - {reader.DESCRIPTION}" for reader in READERS)


def read_any(path: Path) -> SAESpec:
    """Read the SAE at ``path`` (a weights file or a folder holding one) into canonical tensors."""
    weights = find_weights(path)
    src = open_weights(weights)
    config, config_path = ({}, None) if pack.matches(src) else sidecar_config(weights)
    for reader in READERS:
        if reader.matches(src):
            return reader.read(src, config, config_path)
    names = ", ".join(sorted(src.keys())[:12]) or "none"
    raise ValueError(f"{weights}: unknown SAE layout (tensors: {names}). Known layouts:\n{known_layouts()}")


def find_weights(path: Path) -> Path:
    """The weights file of ``path``: the file itself, a library's file name, or the folder's only weights file."""
    if not path.exists():
        raise FileNotFoundError(f"SAE path does not exist: {path}")
    if path.is_file():
        return path
    for name in FOLDER_WEIGHTS:
        if (path / name).is_file():
            return path / name
    if (path / "final" / unbox.WEIGHTS_FILE).is_file():  # an sdxl-unbox run folder keeps its SAE in final/
        return path / "final" / unbox.WEIGHTS_FILE
    candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise ValueError(f"{path}: several weights files ({', '.join(p.name for p in candidates)}); "
                         "load one of them by its file path")
    raise FileNotFoundError(f"{path}: no SAE weights file in this folder. Known layouts:\n{known_layouts()}")
