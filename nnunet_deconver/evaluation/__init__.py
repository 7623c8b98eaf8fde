"""Evaluation: the paper's Dice / HD95, the challenges' own metrics, cross-validation reports.

One concern per module:

- :mod:`.metrics`: Dice, HD95 (``directed-max``, the paper's default, or ``pooled``) and Hausdorff
  distance of binary masks (numpy + scipy only); :mod:`.penalty`: the empty-mask HD95 setting.
- :mod:`.challenge`: BraTS 2023 lesion-wise, ISLES'22, GlaS object-level and FIVES figures.
- :mod:`.targets`: labels / regions from a dataset.json; :mod:`.reading`: reading and checking a
  segmentation; :mod:`.case`: one case and the pool over cases; :mod:`.discovery`: which
  prediction / reference pairs, per fold; :mod:`.aggregate`: fold and overall statistics;
  :mod:`.render`: Markdown; :mod:`.outputs`: JSON / CSV / Markdown files; :mod:`.comparison`:
  the paper's rows (figures from :mod:`nnunet_deconver.paper`) beside these; :mod:`.run` and
  :mod:`.report`: the two entry points; :mod:`.files`: errors and guarded file access. The
  ``evaluate`` and ``evaluate-folders`` subcommands are in :mod:`nnunet_deconver.cli`.

The metric functions are re-exported lazily (``from nnunet_deconver.evaluation import hd95``):
importing this package itself loads nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BRATS_HD95_PENALTY", "HD95_DEFINITIONS", "binary_metrics", "dice", "hausdorff", "hd95",
           "surface_distances", "surface_mask"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nnunet_deconver.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
