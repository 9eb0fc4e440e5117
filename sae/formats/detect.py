"""Which layout is this path? Placeholder until the readers land (next commit)."""
from pathlib import Path


def read_any(path: Path):
    raise ValueError(f"{path}: SAE formats are not readable yet on this branch")
