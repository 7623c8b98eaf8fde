"""The repository root, put first on ``sys.path`` when this module is imported.

The benchmark scripts are run from the repository root (``.venv/bin/python benchmarks/bench_ndc.py``),
which puts ``benchmarks/`` first on ``sys.path``; importing this module puts the repository root
before it, so the working tree's ``nnunet_deconver`` is measured rather than a copy installed in
the venv.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
