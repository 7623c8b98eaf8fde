"""Shared machinery of the performance benchmarks (bench_ndc, bench_step, bench_inference).

Method (the same for every side of every comparison):

- Every measurement runs in a fresh subprocess: the benchmark script re-runs itself as
  ``python <script> --worker <json>``; the worker builds its :class:`Case` from the JSON ``spec``
  with ``torch.set_num_threads(threads)`` (and ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``) and fixed
  seeds, measures, and prints one result line (JSON after :data:`RESULT_MARK`).
- Time: one warm-up run, then the median of ``reps`` runs timed with ``time.perf_counter``;
  fewer (at least one) for slow cases: no run is started that would, going by the previous one,
  take the timed total past ``budget`` seconds.
- Peak memory growth: in another fresh process, with no warm-up at the measured size. The case
  is built (inputs, model, ...) and "primed": the same work once on a tiny input, so that one-time
  costs of a process (library code paged in, thread pools started: about 50 MB, the same for
  every case) are not counted as growth. Then free heap is returned to the system
  (``gc.collect``, ``malloc_trim``), the baseline is VmRSS of ``/proc/self/status``, the
  kernel's peak-RSS mark is reset (``clear_refs``, so earlier peaks do not count), and the work
  runs once; peak = ``ru_maxrss`` (KiB on Linux) and growth = peak - baseline.
- Allocator: by default every worker runs with ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch backs tensors
  of 2 MB and more with transparent huge pages), both sides alike; ``--allocator default`` turns
  it off. A spec may carry ``"thp": bool`` to override it for one row.

The scripts are run from the repository root (``.venv/bin/python benchmarks/bench_ndc.py``);
importing this module puts the repository root first on ``sys.path``, so the working tree's
``nnunet_deconver`` is measured rather than a copy installed in the venv. The parent process
never imports torch: only the workers do.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

RESULT_MARK = "@@bench-result@@ "
DEFAULT_THREADS = 2


# --------------------------------------------------------------------------------------------
# worker side


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


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _timed_runs(fn: Callable[[], Any], warmup: Callable[[], Any], reps: int, budget: float) -> list[float]:
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
    gc.collect()
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


def _peak_growth(fn: Callable[[], Any], prime: Callable[[], Any] | None) -> dict:
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


def _worker(build_case: Callable[[dict], Case], payload: str) -> None:
    """Build the case of ``payload`` (JSON job), measure it, print one result line."""
    job = json.loads(payload)
    import torch

    torch.set_num_threads(job["threads"])
    _seed_everything(job["seed"])
    case = build_case(job["spec"])
    if job["mode"] == "time":
        times = {
            name: _timed_runs(fn, case.warmup or fn, job["reps"], job["budget"]) for name, fn in case.phases.items()
        }
        result: dict = {"times": times, "info": case.info() if case.info else {}}
    elif job["mode"] == "memory":
        result = _peak_growth(case.phases[case.memory_phase], case.prime)
    else:
        raise ValueError(f"unknown mode {job['mode']!r}")
    print(RESULT_MARK + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# parent side


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


def log(message: str) -> None:
    """Progress line on stderr (stdout carries the Markdown report)."""
    print(message, file=sys.stderr, flush=True)


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


# --------------------------------------------------------------------------------------------
# command line


def base_parser(description: str, reps: int = 3) -> argparse.ArgumentParser:
    """Options every benchmark script shares: --quick, --reps, --threads, --seed (and --worker)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--reps", type=int, help=f"timed repetitions after a warm-up (default {reps}; quick 1)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch threads per worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds of timed runs per phase beyond which no further run starts (default 120)")
    parser.add_argument("--allocator", choices=("thp", "default"), default="thp",
                        help="thp (default): PyTorch's huge-page allocation, THP_MEM_ALLOC_ENABLE=1, in every "
                        "worker (what the Deconver trainers turn on for CPU training); default: plain malloc")
    parser.add_argument("--worker", metavar="JSON", help=argparse.SUPPRESS)
    parser.set_defaults(default_reps=reps)
    return parser


def bench_main(
    parser: argparse.ArgumentParser,
    build_case: Callable[[dict], Case],
    report: Callable[[argparse.Namespace, "Session"], str],
    argv: Sequence[str] | None = None,
) -> int:
    """Entry point of a benchmark script: a worker job, or the whole benchmark printed as Markdown."""
    args = parser.parse_args(argv)
    if args.worker:
        _worker(build_case, args.worker)
        return 0
    reps = args.reps or (1 if args.quick else args.default_reps)
    session = Session(Settings(reps, args.threads, args.seed, args.budget, args.allocator == "thp"))
    print(report(args, session))
    return 0


def in_process_settings(args: argparse.Namespace, reps: int) -> Settings:
    """For scripts that measure in their own process: apply ``--allocator`` and ``--threads``
    (before torch is imported: PyTorch reads ``THP_MEM_ALLOC_ENABLE`` once), seed, and return
    the :class:`Settings` their report header shows."""
    if "torch" in sys.modules:
        raise RuntimeError("torch must not be imported before the allocator is chosen")
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1" if args.allocator == "thp" else "0"
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    _seed_everything(args.seed)
    return Settings(reps=reps, threads=args.threads, seed=args.seed, thp=args.allocator == "thp")


def parse_sizes(text: str) -> list[tuple[int, ...]]:
    """``"32x32x32,256x256"`` -> ``[(32, 32, 32), (256, 256)]``."""
    return [tuple(int(n) for n in item.split("x")) for item in text.split(",") if item]


def parse_ints(text: str) -> list[int]:
    """``"32,64"`` -> ``[32, 64]``."""
    return [int(n) for n in text.split(",") if n]


# --------------------------------------------------------------------------------------------
# report


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _busy_cpu_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (``/proc/stat``)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU-seconds of this process and its finished children (the workers)."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def _display_path(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


class Session:
    """One benchmark run: settings, start time and load, and the Markdown header it ends with.

    The header reports how much CPU other processes took during the run (machine busy time minus
    this process's and its workers'): on 2 cores, a competing process can slow the 2-thread
    workers many times over, so timings are only comparable when that share is small.
    """

    #: share of the machine's CPU time taken by other processes above which timings are flagged
    BUSY_WARNING = 0.05

    def __init__(self, settings: Settings, method: str | None = None):
        self.settings = settings
        self.method = method
        self.started = time.perf_counter()
        self.date = datetime.datetime.now().astimezone()
        self.load_before = os.getloadavg()[0]
        self.cpu_before = (_busy_cpu_seconds(), _own_cpu_seconds())
        self.command = shlex.join([_display_path(sys.executable), _display_path(sys.argv[0]), *sys.argv[1:]])

    def interference(self) -> str:
        """CPU time other processes used since the start, as a Markdown line fragment."""
        wall = time.perf_counter() - self.started
        others = (_busy_cpu_seconds() - self.cpu_before[0]) - (_own_cpu_seconds() - self.cpu_before[1])
        share = max(others, 0.0) / (wall * (os.cpu_count() or 1))
        text = (f"wall time {wall:.0f} s; other processes used {max(others, 0.0):.0f} CPU-s meanwhile "
                f"({share:.0%} of the machine); load average (1 min) at the start {self.load_before:.2f}")
        if share > self.BUSY_WARNING:
            text += " — **machine not idle: timings unreliable, rerun on an idle machine**"
        return text

    def header(self) -> list[str]:
        """Machine facts, settings and command, as Markdown bullet lines."""
        try:
            usable = len(os.sched_getaffinity(0))
        except AttributeError:
            usable = os.cpu_count()
        s = self.settings
        return [
            f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs ({usable} usable), "
            f"Linux {platform.release()}, Python {platform.python_version()}",
            f"- torch {_package_version('torch')} (CPU), nnunetv2 {_package_version('nnunetv2')}, "
            f"dynamic_network_architectures {_package_version('dynamic_network_architectures')}",
            f"- Threads per worker: {s.threads}; seed {s.seed}; allocator: "
            f"{'THP_MEM_ALLOC_ENABLE=1 (huge pages)' if s.thp else 'THP_MEM_ALLOC_ENABLE=0 (plain malloc)'} "
            f"unless a row says otherwise; date {self.date:%Y-%m-%d %H:%M %Z}",
            f"- Run: {self.interference()}",
            f"- Command: `{self.command}`",
            f"- Method: {self.method or self.default_method()}",
        ]

    def default_method(self) -> str:
        """How :func:`measure` measures, as one Markdown line."""
        s = self.settings
        return (
            f"every measurement in a fresh process; time = median of {s.reps} run(s) after one "
            f"warm-up (fewer, at least one, when they would take over {s.budget:.0f} s); peak growth = "
            "peak RSS (`ru_maxrss`) minus RSS after building the inputs/model, one run without warm-up "
            "(process primed on a tiny input; see `benchmarks/_measure.py`)"
        )

    def section(self, title: str, intro: Sequence[str], body: Sequence[str]) -> str:
        """A Markdown section: title, intro lines, machine header, then the tables and notes."""
        return "\n".join([f"## {title}", "", *intro, "", *self.header(), "", *body]).rstrip() + "\n"


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


# --------------------------------------------------------------------------------------------
# the networks compared by bench_step and bench_inference

INPUT_CHANNELS = 2
NUM_CLASSES = 2
NETWORKS = ("deconver", "plainconvunet")


def select_ndc_backend(name: str | None) -> None:
    """Force the NDC backend of this worker (``NNUNET_DECONVER_NDC_BACKEND``; None: leave it) and
    check that it is the one that runs (the C++ kernels build here on first use, before timing)."""
    if name is None:
        return
    import torch

    from nnunet_deconver.ndc.backends import BACKEND_ENV, backend_for

    os.environ[BACKEND_ENV] = name
    if backend_for(torch.device("cpu")).name != name:
        raise RuntimeError(f"the NDC backend {name!r} is not available in this worker")


def build_network(name: str, deep_supervision: bool, checkpoint_levels: Sequence[int] = ()):
    """A network of the comparison, 3D, 2 input channels, 2 outputs.

    - ``deconver``: Deconver, ISLES'22 preset (widths 64-512, 4 levels, NDC k = 3, R = 4);
    - ``plainconvunet``: nnU-Net's PlainConvUNet as nnU-Net's default plans build it for a 64^3
      patch at isotropic spacing (5 stages, 32-320 features, two 3^3 convs per stage, instance
      norm, LeakyReLU, He initialisation).
    """
    if name == "deconver":
        from nnunet_deconver.network import build_preset

        return build_preset(
            "isles22", kernel_size=3, deep_supervision=deep_supervision, num_classes=NUM_CLASSES,
            checkpoint_levels=list(checkpoint_levels),
        )
    if name == "plainconvunet":
        if checkpoint_levels:
            raise ValueError("checkpoint_levels is a Deconver option")
        from dynamic_network_architectures.architectures.unet import PlainConvUNet
        from torch import nn

        n_stages = 5
        network = PlainConvUNet(
            input_channels=INPUT_CHANNELS, n_stages=n_stages, features_per_stage=[32, 64, 128, 256, 320],
            conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * n_stages,
            strides=[[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1), n_conv_per_stage=[2] * n_stages,
            num_classes=NUM_CLASSES, n_conv_per_stage_decoder=[2] * (n_stages - 1), conv_bias=True,
            norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None,
            nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision,
        )
        network.apply(network.initialize)
        return network
    raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")


def network_label(name: str, checkpoint_levels: Sequence[int] = ()) -> str:
    """Row label of a network, e.g. "Deconver (checkpoint_levels=[0])"."""
    base = {"deconver": "Deconver ISLES'22", "plainconvunet": "nnU-Net PlainConvUNet"}[name]
    return f"{base} (checkpoint_levels={list(checkpoint_levels)})" if checkpoint_levels else base
