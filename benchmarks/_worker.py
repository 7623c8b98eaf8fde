"""What runs inside a worker: a fresh process that measures one case and prints its result.

A benchmark script re-runs itself as ``python <script> --worker <json>`` (see ``_protocol.py``);
the worker builds its :class:`Case` from the JSON ``spec`` with ``torch.set_num_threads(threads)``
(``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` come from the parent) and fixed seeds, measures one of:

- time: one warm-up run, then the median of ``reps`` runs, each timed on its own with
  ``time.perf_counter``; fewer (at least one) for slow cases: no run is started that would, going
  by the previous one, take the timed total past ``budget`` seconds;
- peak memory growth, with no warm-up at the measured size. The case is built (inputs, model, ...)
  and "primed": the same work once on a tiny input, so that one-time costs of a process (library
  code paged in, thread pools started: about 50 MB, the same for every case) are not counted as
  growth. Then free heap is returned to the system (``gc.collect``, the blocks Deconver's forwards
  without gradients keep, ``malloc_trim``), the baseline
  is VmRSS of ``/proc/self/status``, the kernel's peak-RSS mark is reset (``clear_refs``, so
  earlier peaks do not count), and the work runs once; peak = ``ru_maxrss`` (KiB on Linux) and
  growth = peak - baseline. PyTorch has no counter of CPU peak memory, hence the fresh process;

and prints one result line (JSON after :data:`RESULT_MARK`).

The timing loop is written out rather than taken from ``torch.utils.benchmark``: its ``Timer``
warms up by running the statement itself (two runs in ``timeit``, a block-size search in
``blocked_autorange``) and has no bound on the total time, while a case here may warm up on other
work (inference: a one-tile volume) and one run may take minutes (a training step at 64^3).
"""

from __future__ import annotations

import ctypes
import gc
import json
import random
import resource
import time
from dataclasses import dataclass
from typing import Any, Callable

RESULT_MARK = "@@bench-result@@ "


@dataclass
class Case:
    """What a worker measures; built inside the worker by the script's ``build_case(spec)``.

    Attributes:
        phases: named zero-argument callables, each one unit of measured work (e.g. "fwd").
        memory_phase: the phase whose peak memory growth is measured.
        warmup: run once before timing each phase (default: the phase itself).
        prime: run once before the memory baseline: the memory phase's work on a tiny input, with
            no state left behind (see the module docstring).
        info: facts computed after timing, e.g. parameters and FLOPs (JSON-serialisable dict).
    """

    phases: dict[str, Callable[[], Any]]
    memory_phase: str
    warmup: Callable[[], Any] | None = None
    prime: Callable[[], Any] | None = None
    info: Callable[[], dict] | None = None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def timed_runs(fn: Callable[[], Any], warmup: Callable[[], Any], reps: int, budget: float) -> list[float]:
    """Seconds of up to ``reps`` runs of ``fn`` after one run of ``warmup``.

    At least one run; no further run when the previous one says it would take the total past
    ``budget`` seconds.
    """
    warmup()
    times: list[float] = []
    while len(times) < reps and (not times or sum(times) + times[-1] <= budget):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _status_kib(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (e.g. VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _release_free_memory() -> None:
    from nnunet_deconver.network.cpu_memory import release_cpu_memory

    gc.collect()
    release_cpu_memory()  # blocks a forward without gradients kept for the next one
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False when not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_growth(fn: Callable[[], Any], prime: Callable[[], Any] | None) -> dict:
    """Baseline RSS, peak RSS and growth (MB) of one run of ``fn``, after one run of ``prime``."""
    if prime is not None:
        prime()
    _release_free_memory()
    baseline = _status_kib("VmRSS")
    reset = _reset_peak_rss()
    fn()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "baseline_mb": baseline / 1024,
        "peak_mb": peak / 1024,
        "growth_mb": (peak - baseline) / 1024,
        "peak_reset": reset,
    }


def run_job(build_case: Callable[[dict], Case], payload: str) -> None:
    """Build the case of ``payload`` (JSON job), measure it, print one result line."""
    job = json.loads(payload)
    import torch

    torch.set_num_threads(job["threads"])
    seed_everything(job["seed"])
    case = build_case(job["spec"])
    if job["mode"] == "time":
        times = {
            name: timed_runs(fn, case.warmup or fn, job["reps"], job["budget"]) for name, fn in case.phases.items()
        }
        result: dict = {"times": times, "info": case.info() if case.info else {}}
    elif job["mode"] == "memory":
        result = peak_growth(case.phases[case.memory_phase], case.prime)
    else:
        raise ValueError(f"unknown mode {job['mode']!r}")
    print(RESULT_MARK + json.dumps(result), flush=True)
