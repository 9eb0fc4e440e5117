"""Read the tensors of one weights file, lazily where the format allows, never writing to it.

* ``.safetensors``: the header is parsed here and every tensor is a view into a private (copy-on-write)
  memory map of the file, so nothing is read until used and a 300 MB matrix costs no RAM up front.
  Offsets are checked against the file size, so truncated or corrupt files fail with the file's name.
* ``.pt`` / ``.pth``: ``torch.load(weights_only=True)`` only (memory-mapped for zip checkpoints); plain
  tensors, numbers, strings and dicts come back, nothing else is ever unpickled.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import torch

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + TORCH_SUFFIXES  # every weights file an SAE can be

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
_MAX_HEADER = 100 << 20  # the safetensors spec caps the JSON header at 100 MB


class TensorSource:
    """Named tensors (and, for safetensors, string metadata) of one file."""

    def __init__(self, path: Path, tensors: dict, metadata: dict[str, str] | None = None, extras: dict | None = None):
        self.path = path
        self.tensors = tensors          # name -> torch.Tensor
        self.metadata = metadata or {}  # safetensors __metadata__
        self.extras = extras or {}      # non-tensor entries of a torch state dict (OpenAI: activation, ...)

    def keys(self) -> set[str]:
        return set(self.tensors)

    def get(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise ValueError(f"{self.path}: missing tensor {name!r} (has: {', '.join(sorted(self.tensors))})")
        return self.tensors[name]


def open_weights(path: Path) -> TensorSource:
    """Open a weights file by its suffix."""
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return read_torch(path)
    raise ValueError(f"{path}: unknown weights file type {suffix!r} "
                     f"(known: {', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)})")


def read_safetensors(path: Path) -> TensorSource:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path}: corrupt or truncated safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: corrupt safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    buffer = None
    if header:
        buffer = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)
    tensors = {}
    for name, info in header.items():
        tensors[name] = _st_tensor(path, name, info, buffer, data_start, size)
    return TensorSource(path, tensors, metadata)


def _st_tensor(path, name, info, buffer, data_start, size):
    try:
        dtype = _ST_DTYPES[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: corrupt safetensors header entry for {name!r}: {info!r}") from None
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if end - begin != nbytes or begin < 0 or data_start + end > size:
        raise ValueError(f"{path}: tensor {name!r} {info['dtype']}{shape} needs bytes {begin}..{end} of the data, "
                         f"but the file holds {size - data_start} data bytes: truncated or corrupt file")
    raw = buffer[data_start + begin:data_start + end]
    try:
        flat = raw.view(dtype)
    except RuntimeError:  # offset not a multiple of the element size: copy just this tensor
        flat = raw.clone().view(dtype)
    return flat.reshape(shape)


def read_torch(path: Path) -> TensorSource:
    """A ``.pt``/``.pth`` state dict, through ``torch.load(weights_only=True)`` and nothing else."""
    obj = load_torch(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict of named tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    extras = {str(k): v for k, v in obj.items() if not isinstance(v, torch.Tensor)}
    return TensorSource(path, tensors, extras=extras)


def load_torch(path: Path):
    """Whatever a ``.pt`` holds (tensors, numbers, strings, dicts), through ``torch.load(weights_only=True)``."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err) and "zip" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) checkpoint
    except Exception as err:  # torch raises many types for corrupt or unsafe pickles
        raise ValueError(f"{path}: cannot be read as a weights-only torch state dict "
                         f"(corrupt, truncated, or it pickles Python objects): {err}") from None
    return obj
