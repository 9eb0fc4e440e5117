"""JSON configs: reading them with clear errors and finding the one that sits beside a weights file."""
from __future__ import annotations

import json
from pathlib import Path

# Keys under which public configs name the activation site the SAE was trained on.
HOOK_KEYS = ("hook", "hook_name", "hookpoint", "hook_point", "loc")
# The configs the libraries write beside their weights: a folder holding one is one SAE's own folder.
CONFIG_NAMES = ("cfg.json", "config.json")


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def sidecar_config(weights: Path, names=CONFIG_NAMES) -> tuple[dict, Path | None]:
    """The config beside ``weights``: ``<stem>.json`` first (the most specific), then ``names``."""
    for candidate in (weights.with_suffix(".json"), *(weights.parent / n for n in names)):
        if candidate.is_file():
            return read_json(candidate), candidate
    return {}, None


def hook_from(config: dict) -> str | None:
    """The activation site named in a config (top level, then SAELens ``metadata``/``meta``)."""
    for scope in (config, config.get("metadata") or {}, config.get("meta") or {}):
        if isinstance(scope, dict):
            for key in HOOK_KEYS:
                if isinstance(scope.get(key), str) and scope[key]:
                    return scope[key]
    return None
