"""The header every benchmark report starts with: the machine, how busy it was, settings, command.

:class:`Session` is one benchmark run; it records the start (time, load, CPU counters) and ends the
report with the machine facts, the settings, what else ran meanwhile, the command and the method.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import resource
import shlex
import sys
import time
from typing import Sequence

from _protocol import Settings


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
        """How :func:`_protocol.measure` measures, as one Markdown line."""
        s = self.settings
        return (
            f"every measurement in a fresh process; time = median of {s.reps} run(s) after one "
            f"warm-up (fewer, at least one, when they would take over {s.budget:.0f} s); peak growth = "
            "peak RSS (`ru_maxrss`) minus RSS after building the inputs/model, one run without warm-up "
            "(process primed on a tiny input; see `benchmarks/_worker.py`)"
        )

    def section(self, title: str, intro: Sequence[str], body: Sequence[str]) -> str:
        """A Markdown section: title, intro lines, machine header, then the tables and notes."""
        return "\n".join([f"## {title}", "", *intro, "", *self.header(), "", *body]).rstrip() + "\n"
