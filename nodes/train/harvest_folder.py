"""Where harvested activations live (ComfyUI's output folder / sae_activations) and how their names are checked: shared by Harvest and Train."""
from __future__ import annotations

import os

import folder_paths


HARVEST_FOLDER = "sae_activations"


def plain_name(name: str, what: str) -> str:
    """A file or folder name that stays inside its folder (no separators, not hidden, not empty)."""
    name = name.strip()
    if not name or name.startswith(".") or any(sep in name for sep in ("/", "\\")):
        raise ValueError(f"{what} {name!r} must be a plain name (no path separators)")
    return name


def harvest_folder(name: str) -> str:
    """``output/sae_activations/<name>``."""
    return os.path.join(folder_paths.get_output_directory(), HARVEST_FOLDER, plain_name(name, "harvest name"))
