"""Feature labels: a JSON object of feature index -> label, kept in a file beside an SAE.

Looked up as ``<stem>.labels.json`` beside the SAE's weights file, then ``labels.json`` in the SAE's own
folder (a folder layout: a config file beside the weights). A ``labels.json`` among single-file SAEs
belongs to none of them and is ignored.
Steering inputs may name features by label (``blue:2.0``); an unknown name lists the nearest labels.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path

from .formats.configs import CONFIG_NAMES

LABELS_SUFFIX = ".labels.json"
FOLDER_LABELS = "labels.json"


def _folder_labels(path: Path) -> Path | None:
    """``labels.json`` of a folder-layout SAE (a folder, or weights with a config file beside them), else None."""
    folder = path if path.is_dir() else path.parent
    if path.is_dir() or any((folder / name).is_file() for name in CONFIG_NAMES):
        return folder / FOLDER_LABELS
    return None


def labels_file_for(sae_path) -> Path | None:
    """The labels file that belongs to the SAE at ``sae_path`` (file or folder), or None."""
    path = Path(sae_path)
    candidates = [] if path.is_dir() else [path.with_name(path.stem + LABELS_SUFFIX)]
    candidates.append(_folder_labels(path))
    return next((c for c in candidates if c is not None and c.is_file()), None)


def labels_target_for(sae_path) -> Path:
    """Where a labels file for the SAE at ``sae_path`` is written: the one it already has, else
    ``labels.json`` in an SAE's own folder, else ``<stem>.labels.json`` beside a single weights file."""
    found = labels_file_for(sae_path)
    if found is not None:
        return found
    path = Path(sae_path)
    return _folder_labels(path) or path.with_name(path.stem + LABELS_SUFFIX)


def write_labels(path, labels: dict[int, str]) -> None:
    """Write ``{index: label}`` as the JSON object ``read_labels`` reads (indices in order)."""
    text = json.dumps({str(i): labels[i] for i in sorted(labels)}, indent=1, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def read_labels(path, d_sae: int | None = None) -> dict[int, str]:
    """``{index: label}`` from a labels file; a one-line error naming the file for anything malformed."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"labels file {path} is not readable JSON ({err}); fix or remove it") from None
    if not isinstance(raw, dict):
        raise ValueError(f"labels file {path} must be a JSON object of feature index -> label, "
                         f"got {type(raw).__name__}; fix or remove it")
    labels = {}
    for key, label in raw.items():
        if not str(key).isdigit() or not isinstance(label, str) or not label.strip():
            raise ValueError(f"labels file {path}: entry {key!r}: {label!r} is not index -> non-empty label; "
                             "fix or remove it")
        index = int(key)
        if d_sae is not None and index >= d_sae:
            raise ValueError(f"labels file {path}: index {index} is out of range for an SAE of {d_sae} features; "
                             "fix or remove it")
        labels[index] = label.strip()
    return labels


def feature_by_label(name: str, labels: dict[int, str]) -> int:
    """The index labelled ``name`` (case-insensitive); an unknown name raises with the nearest labels."""
    wanted = name.strip().lower()
    matches = [index for index, label in labels.items() if label.lower() == wanted]
    if matches:
        return min(matches)
    if not labels:
        raise ValueError(f"features: {name!r} is not a feature index and this SAE has no labels "
                         f"(put a {LABELS_SUFFIX} file beside it to name features)")
    nearest = difflib.get_close_matches(wanted, sorted({label.lower() for label in labels.values()}), n=5, cutoff=0.0)
    raise ValueError(f"features: no feature is labelled {name!r}; nearest labels: {', '.join(nearest)}")


def describe(index: int, labels: dict[int, str]) -> str:
    """``"37 (blue)"`` where feature 37 has a label, else ``"37"``: how reports name features."""
    return f"{index} ({labels[index]})" if index in labels else str(index)
