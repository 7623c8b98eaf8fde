"""Formatting of the benchmark reports: numbers, ratios, Markdown tables, progress lines."""

from __future__ import annotations

import sys
from typing import Any, Sequence


def log(message: str) -> None:
    """Progress line on stderr (stdout carries the Markdown report)."""
    print(message, file=sys.stderr, flush=True)


def fmt_s(seconds: float | None) -> str:
    """Seconds with three significant digits ("n/a" when missing)."""
    if seconds is None:
        return "n/a"
    return f"{seconds:.0f}" if seconds >= 100 else f"{seconds:.3g}"


def fmt_mb(mb: float | None) -> str:
    """Megabytes, whole above 10."""
    if mb is None:
        return "n/a"
    return f"{mb:.0f}" if abs(mb) >= 10 else f"{mb:.1f}"


def fmt_ratio(numerator: float | None, denominator: float | None, target: float | None = None) -> str:
    """``numerator / denominator`` as "0.25x", with a check mark against ``target`` (at most)."""
    if numerator is None or not denominator:
        return "n/a"
    ratio = numerator / denominator
    mark = "" if target is None else (" ✓" if ratio <= target else " ✗")
    return f"{ratio:.2f}x{mark}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> list[str]:
    """Markdown table lines; ``align`` is one character per column, "l" or "r" (default: first l)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = [" | ".join(headers), " | ".join(rule), *(" | ".join(str(c) for c in row) for row in rows)]
    return [f"| {line} |" for line in lines]
