"""Run the performance benchmarks and collect their Markdown sections for RESULTS.md.

Each benchmark script runs in its own process (which starts a fresh worker per measurement); its
Markdown section (machine header, command, tables, ratios) is printed to stdout and written to
``benchmarks/_results/<name>.md`` (``<name>-quick.md`` with ``--quick``). The folder ignores its
own contents (a ``.gitignore`` holding ``*``). Progress goes to stderr.

Run from the repository root::

    .venv/bin/python benchmarks/run_benchmarks.py                       # everything, full sizes
    .venv/bin/python benchmarks/run_benchmarks.py --quick               # tiny sizes, a smoke test
    .venv/bin/python benchmarks/run_benchmarks.py --only ndc --only step
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from _format import log
from _repo import REPO_ROOT

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "_results"
BENCHMARKS = {"ndc": "bench_ndc.py", "step": "bench_step.py", "inference": "bench_inference.py",
              "profile": "profile_step.py", "kernels": "bench_kernels.py"}


def results_dir() -> Path:
    """``benchmarks/_results``, created (self-ignored by git) when missing."""
    RESULTS_DIR.mkdir(exist_ok=True)
    ignore = RESULTS_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return RESULTS_DIR


def run(name: str, options: Sequence[str], quick: bool) -> bool:
    """Run one benchmark script; print and save its Markdown. False if it failed."""
    script = HERE / BENCHMARKS[name]
    command = [sys.executable, str(script), *options]
    log(f"[{name}] {' '.join(command)}")
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    log(f"[{name}] done in {time.perf_counter() - start:.0f} s (exit code {proc.returncode})")
    if proc.returncode:
        return False
    print(proc.stdout, flush=True)
    (results_dir() / f"{name}{'-quick' if quick else ''}.md").write_text(proc.stdout)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS),
                        help="run only this benchmark (repeatable; default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the scripts")
    parser.add_argument("--reps", type=int, help="timed repetitions (default: each script's own)")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default 2)")
    parser.add_argument("--budget", type=float, help="seconds of timed runs per phase (default 120)")
    parser.add_argument("--allocator", choices=("thp", "default"),
                        help="huge-page allocation in every worker (thp, the default) or plain malloc")
    args = parser.parse_args(argv)
    options = ["--quick"] if args.quick else []
    for flag, value in (("--reps", args.reps), ("--threads", args.threads), ("--budget", args.budget),
                        ("--allocator", args.allocator)):
        if value is not None:
            options += [flag, str(value)]
    start = time.perf_counter()
    names = [name for name in BENCHMARKS if name in (args.only or BENCHMARKS)]
    failed = [name for name in names if not run(name, options, args.quick)]
    log(f"all done in {time.perf_counter() - start:.0f} s; results in {RESULTS_DIR.relative_to(REPO_ROOT)}/"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
