"""The HD95 (and Hausdorff) value given when exactly one of prediction and reference is empty.

One parser, :meth:`EmptyPenalty.parse`, for every place that accepts the setting (command line,
Python arguments): ``"diagonal"`` (the image diagonal in units of the spacing,
sqrt(sum((shape_i * spacing_i)^2))), ``"brats"`` (:data:`BRATS_HD95_PENALTY`) or a number >= 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

__all__ = ["BRATS_HD95_PENALTY", "EmptyPenalty", "PenaltyLike", "image_diagonal"]

#: An HD95 for exactly one empty mask on BraTS images (mm): the diagonal
#: sqrt(240^2 + 240^2 + 155^2) of the BraTS 240 x 240 x 155 grid at 1 mm. (The BraTS 2023
#: lesion-wise tools give 374 instead; the BraTS figures of ``challenge.brats`` use that.)
BRATS_HD95_PENALTY: float = 373.12866


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image diagonal, sqrt(sum((shape_i * spacing_i)^2)), in units of spacing."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


@dataclass(frozen=True)
class EmptyPenalty:
    """``kind`` is ``"diagonal"``, ``"brats"`` or ``"value"`` (then ``value`` holds the number)."""

    kind: str
    value: float | None = None

    @classmethod
    def parse(cls, setting: "PenaltyLike") -> "EmptyPenalty":
        """Accept an :class:`EmptyPenalty`, ``"diagonal"``, ``"brats"`` or a number (or its text).

        Raises:
            ValueError: for anything else, or a negative / non-finite number.
        """
        if isinstance(setting, EmptyPenalty):
            return setting
        if isinstance(setting, str):
            key = setting.strip().lower()
            if key in ("diagonal", "brats"):
                return cls(key)
            try:
                number = float(key)
            except ValueError:
                raise ValueError(f"the empty-mask HD95 must be 'diagonal', 'brats' or a number >= 0, "
                                 f"got {setting!r}") from None
        else:
            number = float(setting)
        if not (number >= 0 and math.isfinite(number)):
            raise ValueError(f"the empty-mask HD95 must be a finite number >= 0, got {setting!r}")
        return cls("value", number)

    def resolve(self, shape: Sequence[int], spacing: Sequence[float]) -> float:
        """The number for an image of ``shape`` and ``spacing`` (per array axis)."""
        if self.kind == "diagonal":
            return image_diagonal(shape, spacing)
        if self.kind == "brats":
            return BRATS_HD95_PENALTY
        return float(self.value)  # type: ignore[arg-type]

    @property
    def setting(self) -> str | float:
        """As given: ``"diagonal"``, ``"brats"`` or the number (for JSON)."""
        return self.value if self.kind == "value" else self.kind  # type: ignore[return-value]

    @property
    def description(self) -> str:
        if self.kind == "diagonal":
            return "the image diagonal"
        if self.kind == "brats":
            return f"{BRATS_HD95_PENALTY} (BraTS)"
        return f"{self.value:g}"


PenaltyLike = Union[EmptyPenalty, str, float]
