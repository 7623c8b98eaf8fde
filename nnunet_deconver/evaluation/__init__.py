"""Evaluation: Dice / HD95 metrics and cross-validation reports.

- :mod:`nnunet_deconver.evaluation.metrics`: Dice and HD95 of binary masks (numpy + scipy only).
- :mod:`nnunet_deconver.evaluation.report`: per-case / per-fold / overall reports over nnU-Net
  results folders or two folders of segmentations (JSON, CSV, Markdown), with the paper's
  Deconver rows for comparison (:mod:`nnunet_deconver.evaluation.paper`).
- :mod:`nnunet_deconver.evaluation.cli`: the ``evaluate`` and ``evaluate-folders`` subcommands.

The metric functions are re-exported lazily (``from nnunet_deconver.evaluation import hd95``):
importing this package itself loads nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BRATS_HD95_PENALTY", "binary_metrics", "dice", "hd95", "surface_distances", "surface_mask"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nnunet_deconver.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
