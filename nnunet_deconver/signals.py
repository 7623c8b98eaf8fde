"""SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, cluster schedulers) as exceptions.

Python turns SIGINT into :class:`KeyboardInterrupt`; :func:`termination_raises` turns SIGTERM into
:class:`Terminated` as well, so that the ``with`` blocks that own a temporary folder remove it on
the way out. :func:`deferred_signals` holds both back while a few renames must happen together
(moving a finished data set into place). :func:`interruption_exit` prints the one line and gives
the exit code a shell expects (128 + signal number: 130, 143).

Standard library only.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator


class Terminated(BaseException):
    """SIGTERM arrived (a :class:`BaseException`, like :class:`KeyboardInterrupt`)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def termination_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere a no-op)."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred_signals(raise_after: bool = True) -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM back until the block is done; yield the list of those that arrived.

    For steps that must not be cut in half (removing a temporary folder; renaming the old data set
    aside and the new one into place). With ``raise_after`` a signal that arrived is raised at the
    end of the block (unless the block itself raised); without, the caller decides.
    """
    pending: list[int] = []
    if not _in_main_thread():
        yield pending
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in signals}
    try:
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending and raise_after:
        if pending[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(pending[0])


def ignore_sigint_in_worker() -> None:
    """Pool initializer: Ctrl-C goes to the whole process group; only the main process handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interruption_exit(exc: BaseException, prog: str, detail: str = "") -> int:
    """Print one line for a :class:`KeyboardInterrupt` / :class:`Terminated`; return 130 / 143."""
    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    name = signal.Signals(signum).name
    how = "interrupted (Ctrl-C, SIGINT)" if signum == signal.SIGINT else f"stopped by {name}"
    print(f"{prog}: {how}{detail}", file=sys.stderr, flush=True)
    return 128 + int(signum)
