"""``SAELoader`` ("Load SAE"): any SAE layout from ``ComfyUI/models/sae/``, cached while unchanged."""
from __future__ import annotations

import logging
import os
import threading

import torch
import folder_paths
from comfy_api.latest import io

from ..sae import load_sae
from ..sae.formats import unbox
from ..sae.formats.configs import CONFIG_NAMES
from ..sae.formats.sources import WEIGHT_SUFFIXES
from ..sae.labels import FOLDER_LABELS, LABELS_SUFFIX
from .comfy_types import SAEType

SAE_FOLDER = "sae"
# weights files; a folder layout (config.json/cfg.json + weights) is listed by its weights file
SAE_EXTENSIONS = set(WEIGHT_SUFFIXES)
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

log = logging.getLogger(__name__)


def register_sae_folder() -> None:
    """Make ``models/sae`` a model folder, so ``extra_model_paths.yaml`` can add more."""
    default = os.path.join(folder_paths.models_dir, SAE_FOLDER)
    if SAE_FOLDER in folder_paths.folder_names_and_paths:
        paths, extensions = folder_paths.folder_names_and_paths[SAE_FOLDER]
        folder_paths.folder_names_and_paths[SAE_FOLDER] = (paths, set(extensions) | SAE_EXTENSIONS)
    else:
        folder_paths.folder_names_and_paths[SAE_FOLDER] = ([default], set(SAE_EXTENSIONS))


register_sae_folder()


def file_signature(path: str) -> tuple:
    """What identifies the loaded content: the weights file, any config and any labels file beside it."""
    stem = os.path.splitext(path)[0]
    folder = os.path.dirname(path)
    candidates = [path, stem + ".json", stem + LABELS_SUFFIX, os.path.join(folder, FOLDER_LABELS)] + \
        [os.path.join(folder, n) for n in CONFIG_NAMES + (unbox.MEANS_FILE,)]
    signature = []
    for candidate in candidates:
        try:
            stat = os.stat(candidate)
        except OSError:
            continue
        signature.append((candidate, stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


class _SAECache:
    """Loading the same unchanged file twice reuses the tensors; a changed file is reloaded."""

    def __init__(self):
        self._entries: dict[tuple, tuple[tuple, object]] = {}
        self._lock = threading.Lock()

    def get(self, path: str, dtype_name: str):
        key = (os.path.realpath(path), dtype_name)
        signature = file_signature(path)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == signature:
                return hit[1]
        sae = load_sae(path, device="cpu", dtype=DTYPES[dtype_name])
        log.info("loaded SAE %s: d_in=%d d_sae=%d arch=%s k=%s hook=%s", path, sae.d_in, sae.d_sae, sae.arch,
                 sae.k, sae.hook)
        with self._lock:
            self._entries[key] = (signature, sae)
        return sae


SAE_CACHE = _SAECache()


def resolve_sae_path(sae_name: str) -> str:
    path = folder_paths.get_full_path(SAE_FOLDER, sae_name)
    if path is None:
        folders = folder_paths.get_folder_paths(SAE_FOLDER)
        raise FileNotFoundError(f"sae_name {sae_name!r} is not in the SAE folders ({', '.join(folders)})")
    return path


def sae_choices() -> list[str]:
    """The weights files in models/sae, less sdxl-unbox's statistics files beside a ``state_dict.pth``."""
    names = folder_paths.get_filename_list(SAE_FOLDER)
    unbox_folders = {os.path.dirname(n) for n in names if os.path.basename(n) == unbox.WEIGHTS_FILE}
    return [n for n in names if not (os.path.basename(n) in unbox.STATS_FILES and os.path.dirname(n) in unbox_folders)]


class SAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAELoader",
            display_name="Load SAE",
            category="sae_steering",
            description="Load a sparse autoencoder from ComfyUI/models/sae: finebooru/Krea, EleutherAI sparsify, "
                        "SAELens, OpenAI, sdxl-unbox, Gytis's CLIP SAE or this pack's single-file format.",
            inputs=[
                io.Combo.Input("sae_name", options=sae_choices(),
                               tooltip="A weights file in models/sae; folder layouts are listed by their weights file."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="auto keeps the file's dtype; the maths runs in fp32 either way."),
            ],
            outputs=[SAEType.Output(display_name="SAE")],
        )

    @classmethod
    def fingerprint_inputs(cls, sae_name, dtype):
        # re-run when the file (or its config) changes on disk, not only when the name does
        path = folder_paths.get_full_path(SAE_FOLDER, sae_name)
        return (sae_name, dtype, file_signature(path) if path else None)

    @classmethod
    def execute(cls, sae_name, dtype) -> io.NodeOutput:
        return io.NodeOutput(SAE_CACHE.get(resolve_sae_path(sae_name), dtype))
