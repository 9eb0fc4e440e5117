"""Harvested activations on disk: a folder of ``shard-NNNNN.safetensors`` files plus ``manifest.json``.

Each shard holds one 2-D tensor ``activations`` [tokens, d_in] (fp16/bf16/fp32). The manifest says where
they came from (site, block, model, steps, sigmas, dtype) and lists every shard with its token count
and the digest of the prompts that made it, so a harvest can resume (a shard already there for the
same prompts is skipped) and the trainer can refuse shards that disagree with it. The trainer also
reads any folder of safetensors files that each hold one 2-D tensor (no manifest needed).
Files are written to a temporary name and renamed, so an interrupted write never leaves half a shard.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

MANIFEST = "manifest.json"
TENSOR = "activations"
MANIFEST_VERSION = 1
# what must agree between a folder's manifest and a new harvest into it
IDENTITY_KEYS = ("site", "block", "d_in", "dtype", "tokens")
STORE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def prompts_digest(prompts: list[str]) -> str:
    """What identifies the prompts (and their order) that produced a shard."""
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16]


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class ShardWriter:
    """Writes shards and keeps the manifest current; refuses a folder harvested for something else.

    ``identity``: site, block, d_in, dtype (fp16|bf16|fp32), tokens (which tokens were taken); ``details``:
    anything else worth recording (model, steps, sigmas, size, seed...), refreshed on every write.
    """

    def __init__(self, folder, identity: dict, details: dict | None = None):
        self.folder = Path(folder)
        missing = [k for k in IDENTITY_KEYS if k not in identity]
        if missing:
            raise ValueError(f"harvest identity lacks {', '.join(missing)}")
        if identity["dtype"] not in STORE_DTYPES:
            raise ValueError(f"dtype {identity['dtype']!r} is not one of {', '.join(STORE_DTYPES)}")
        self.identity = {k: identity[k] for k in IDENTITY_KEYS}
        self.details = dict(details or {})
        self.shards: dict[int, dict] = {}
        manifest_path = self.folder / MANIFEST
        if manifest_path.exists():
            manifest = read_manifest(manifest_path)
            clash = [f"{k}={manifest.get(k)!r} (this harvest: {self.identity[k]!r})" for k in IDENTITY_KEYS
                     if manifest.get(k) != self.identity[k]]
            if clash:
                raise ValueError(f"{self.folder} already holds activations of another harvest: {', '.join(clash)}; "
                                 f"choose another name (nothing was overwritten)")
            self.shards = {int(s["index"]): s for s in manifest.get("shards", [])}
        elif any(self.folder.glob("*.safetensors")):
            raise ValueError(f"{self.folder} holds safetensors files but no {MANIFEST}: choose another name "
                             f"(nothing was overwritten)")

    def done(self, index: int, digest: str) -> bool:
        """True when shard ``index`` exists for the same prompts (a resumed harvest skips it)."""
        entry = self.shards.get(index)
        if entry is None or not (self.folder / entry["file"]).exists():
            return False
        if entry.get("prompts_digest") != digest:
            raise ValueError(f"{self.folder / entry['file']} was harvested from other prompts (digest "
                             f"{entry.get('prompts_digest')} vs {digest}): choose another name or keep the prompt list")
        return True

    def write(self, index: int, activations: torch.Tensor, digest: str, prompts: tuple[int, int]) -> Path:
        """Write shard ``index`` ([tokens, d_in], cast to the harvest dtype), then the manifest."""
        from safetensors.torch import save_file

        if activations.ndim != 2 or activations.shape[1] != self.identity["d_in"]:
            raise ValueError(f"shard {index}: activations {tuple(activations.shape)} are not [tokens, "
                             f"{self.identity['d_in']}]")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / shard_name(index)
        data = activations.to("cpu", STORE_DTYPES[self.identity["dtype"]]).contiguous()
        _write_atomic(path, lambda tmp: save_file({TENSOR: data}, str(tmp)))
        self.shards[index] = {"index": index, "file": path.name, "tokens": int(data.shape[0]),
                              "prompts": list(prompts), "prompts_digest": digest}
        self.write_manifest()
        return path

    def write_manifest(self) -> None:
        shards = [self.shards[i] for i in sorted(self.shards)]
        manifest = {"version": MANIFEST_VERSION, **self.identity, **self.details,
                    "total_tokens": sum(s["tokens"] for s in shards), "shards": shards}
        text = json.dumps(manifest, indent=1)
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.folder / MANIFEST, lambda tmp: tmp.write_text(text))


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {manifest.get('version') if isinstance(manifest, dict) else '?'} "
                         f"is not {MANIFEST_VERSION}")
    return manifest


@dataclass
class ShardFile:
    path: Path
    key: str
    tokens: int


@dataclass
class ActivationShards:
    """A checked folder of activation shards: every file readable, 2-D, one width, agreeing with the manifest."""

    folder: Path
    files: list[ShardFile]
    d_in: int
    dtype: torch.dtype
    manifest: dict = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return sum(f.tokens for f in self.files)

    @classmethod
    def open(cls, folder) -> "ActivationShards":
        """Check every file's header before any training; a bad one is named in a ``ValueError``."""
        from safetensors import safe_open

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"activation folder {folder} does not exist")
        manifest = read_manifest(folder / MANIFEST) if (folder / MANIFEST).exists() else {}
        paths = sorted(folder.glob("*.safetensors"))
        if not paths:
            raise ValueError(f"{folder} holds no .safetensors activation files")
        files, widths, dtypes = [], set(), set()
        for path in paths:
            try:
                with safe_open(str(path), framework="pt") as f:
                    keys = list(f.keys())
                    key = TENSOR if TENSOR in keys else (keys[0] if len(keys) == 1 else None)
                    if key is None:
                        raise ValueError(f"holds {len(keys)} tensors ({', '.join(keys[:4])}...) and none named "
                                         f"'{TENSOR}'")
                    view = f.get_slice(key)
                    shape, dtype = view.get_shape(), view.get_dtype()
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
            except Exception as err:  # safetensors raises its own error types for corrupt headers
                raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
            if len(shape) != 2 or shape[0] < 1:
                raise ValueError(f"{path}: tensor {key!r} has shape {tuple(shape)}, expected [tokens, d_in]")
            if dtype not in ("F16", "BF16", "F32", "F64"):
                raise ValueError(f"{path}: tensor {key!r} has dtype {dtype}, expected a float dtype")
            files.append(ShardFile(path, key, int(shape[0])))
            widths.add(int(shape[1]))
            dtypes.add(dtype)
        if len(widths) > 1:
            per_file = ", ".join(f"{f.path.name}" for f in files[:3])
            raise ValueError(f"{folder}: shards disagree on the width: {sorted(widths)} (files {per_file}, ...)")
        d_in = widths.pop()
        if manifest:
            _check_against_manifest(folder, manifest, files, d_in)
        dtype = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}[sorted(dtypes)[0]]
        return cls(folder, files, d_in, dtype, manifest)

    def read(self, file_index: int, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of one file, in the stored dtype (memory-mapped: only those rows are read)."""
        from safetensors import safe_open

        shard = self.files[file_index]
        with safe_open(str(shard.path), framework="pt") as f:
            return f.get_slice(shard.key)[start:stop]


def _check_against_manifest(folder: Path, manifest: dict, files: list[ShardFile], d_in: int) -> None:
    if manifest.get("d_in") not in (None, d_in):
        raise ValueError(f"{folder / MANIFEST} says d_in={manifest['d_in']} but the shards are {d_in} wide")
    listed = {s["file"]: s for s in manifest.get("shards", [])}
    for shard in files:
        entry = listed.get(shard.path.name)
        if entry is None:
            raise ValueError(f"{shard.path}: not listed in {folder / MANIFEST} (a file of another harvest?)")
        if int(entry["tokens"]) != shard.tokens:
            raise ValueError(f"{shard.path}: holds {shard.tokens} tokens but {MANIFEST} lists {entry['tokens']}")
