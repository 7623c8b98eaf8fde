"""The parent's side of a measurement: run a worker in a fresh process and read back its result.

Every measurement runs in a fresh subprocess (what the worker does: ``_worker.py``) with
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to the worker's threads. Allocator: by default every
worker runs with ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch backs tensors of 2 MB and more with
transparent huge pages), both sides of a comparison alike; ``--allocator default`` turns it off. A
spec may carry ``"thp": bool`` to override it for one row. The parent process never imports
torch: only the workers do.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _format import fmt_mb, fmt_s, log
from _repo import REPO_ROOT
from _worker import RESULT_MARK

DEFAULT_THREADS = 2


@dataclass(frozen=True)
class Settings:
    """How every worker of a benchmark run measures."""

    reps: int
    threads: int = DEFAULT_THREADS
    seed: int = 0
    budget: float = 120.0
    #: PyTorch's transparent-huge-page allocation (``THP_MEM_ALLOC_ENABLE``) in every worker
    thp: bool = True


@dataclass
class Measurement:
    """Result of :func:`measure`; a field is None / empty when its worker failed."""

    times: dict[str, list[float]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    memory: dict | None = None

    def median(self, phase: str) -> float | None:
        """Median seconds of ``phase``."""
        runs = self.times.get(phase)
        return statistics.median(runs) if runs else None

    @property
    def growth_mb(self) -> float | None:
        """Peak memory growth in MB."""
        return None if self.memory is None else self.memory["growth_mb"]


def run_worker(script: str | Path, spec: dict, mode: str, settings: Settings) -> dict | None:
    """Run ``script --worker`` in a fresh process; its result dict, or None if it failed."""
    payload = json.dumps(
        {"spec": spec, "mode": mode, "reps": settings.reps, "threads": settings.threads, "seed": settings.seed,
         "budget": settings.budget}
    )
    threads = str(settings.threads)
    thp = spec.get("thp", settings.thp)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "THP_MEM_ALLOC_ENABLE": "1" if thp else "0"}
    command = [sys.executable, str(Path(script).resolve()), "--worker", payload]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    log(f"  worker failed (mode {mode}, exit code {proc.returncode}): {spec}\n{proc.stderr[-3000:]}")
    return None


def measure(script: str | Path, spec: dict, settings: Settings, label: str = "") -> Measurement:
    """Time and peak memory growth of one case, each in its own fresh worker process."""
    start = time.perf_counter()
    timed = run_worker(script, spec, "time", settings) or {}
    memory = run_worker(script, spec, "memory", settings)
    result = Measurement(timed.get("times", {}), timed.get("info", {}), memory)
    if memory is not None and not memory["peak_reset"]:
        log("  warning: could not reset the peak-RSS mark; growth may include peaks reached while building")
    medians = ", ".join(
        f"{name} {fmt_s(result.median(name))} s (runs: {' '.join(fmt_s(r) for r in runs)})"
        for name, runs in result.times.items()
    )
    log(f"  {label or spec}: {medians or 'time failed'}; growth {fmt_mb(result.growth_mb)} MB "
        f"[{time.perf_counter() - start:.0f} s]")
    return result
