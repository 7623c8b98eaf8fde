"""How many worker processes a command uses by default, decided once for all of them."""

from __future__ import annotations

import os

#: nnU-Net's own default number of worker processes (``nnUNet_def_n_proc``).
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """The CPU count, at most :data:`MAX_DEFAULT_WORKERS`, at least 1."""
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))
