"""Format readers and the one place that decides which reader a path needs."""
from .detect import read_any

__all__ = ["read_any"]
