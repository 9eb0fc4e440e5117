"""One feature edit: what ``SparseAutoencoder.steer`` applies."""
from __future__ import annotations

import math
from dataclasses import dataclass

OPS = ("add", "set", "scale")


@dataclass(frozen=True)
class Edit:
    """Change feature ``feature`` by ``op`` with ``value``.

    add: z_f += value; set: z_f = value; scale: z_f *= value (0 ablates). With ``only_active``
    the edit touches only tokens where the SAE finds the feature (z_f > 0): "Gytis-style". With
    ``where`` = g it touches only tokens where the SAE finds feature g (z_g > 0): how a feature that is
    absent (blue, on a red object) is brought in where another (red) is.
    """

    feature: int
    op: str = "add"
    value: float = 1.0
    only_active: bool = False
    where: int | None = None

    @property
    def gate(self) -> int | None:
        """The feature whose presence gates this edit (None: every token)."""
        return self.where if self.where is not None else (self.feature if self.only_active else None)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"Edit op {self.op!r} is not one of {', '.join(OPS)}")
        if isinstance(self.feature, bool) or int(self.feature) != self.feature or self.feature < 0:
            raise ValueError(f"Edit feature must be a non-negative integer, got {self.feature!r}")
        if self.where is not None and (isinstance(self.where, bool) or int(self.where) != self.where or self.where < 0):
            raise ValueError(f"Edit where must be a non-negative feature index, got {self.where!r}")
        if not math.isfinite(float(self.value)):
            raise ValueError(f"Edit value for feature {self.feature} is not finite ({self.value})")
