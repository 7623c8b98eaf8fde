"""The command line the benchmark scripts share, and their entry point.

A script either is a worker (``--worker <json>``: measure one case, see ``_worker.py``) or runs the
whole benchmark and prints its Markdown section; :func:`bench_main` does either. Scripts that
measure in their own process (``bench_kernels.py``, ``profile_step.py``) parse the same options
and call :func:`in_process_settings` instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from _machine import Session
from _protocol import DEFAULT_THREADS, Settings
from _worker import Case, run_job, seed_everything


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


def add_patch_options(parser: argparse.ArgumentParser, batch: bool = True) -> None:
    """--patch (cubic patch edge) and, with ``batch``, --batch; read by :func:`patch_edge`, :func:`batch_size`."""
    parser.add_argument("--patch", type=int, help="cubic patch edge (default 64; quick 32)")
    if batch:
        parser.add_argument("--batch", type=int, help="batch size (default 2; quick 1)")


def patch_edge(args: argparse.Namespace) -> int:
    """--patch, or its default: 64 (quick 32)."""
    return args.patch or (32 if args.quick else 64)


def batch_size(args: argparse.Namespace) -> int:
    """--batch, or its default: 2 (quick 1)."""
    return args.batch or (1 if args.quick else 2)


def bench_main(
    parser: argparse.ArgumentParser,
    build_case: Callable[[dict], Case],
    report: Callable[[argparse.Namespace, Session], str],
    argv: Sequence[str] | None = None,
) -> int:
    """Entry point of a benchmark script: a worker job, or the whole benchmark printed as Markdown."""
    args = parser.parse_args(argv)
    if args.worker:
        run_job(build_case, args.worker)
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
    seed_everything(args.seed)
    return Settings(reps=reps, threads=args.threads, seed=args.seed, thp=args.allocator == "thp")


def parse_sizes(text: str) -> list[tuple[int, ...]]:
    """``"32x32x32,256x256"`` -> ``[(32, 32, 32), (256, 256)]``."""
    return [tuple(int(n) for n in item.split("x")) for item in text.split(",") if item]


def parse_ints(text: str) -> list[int]:
    """``"32,64"`` -> ``[32, 64]``."""
    return [int(n) for n in text.split(",") if n]
