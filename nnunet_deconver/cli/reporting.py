"""The one way a command ends in failure: one line on stderr and an exit code, never a traceback.

- a :class:`~nnunet_deconver.errors.DeconverError` (any area's: conversion, evaluation, plans) or an
  :class:`OSError`: ``PROG: error: MESSAGE``, exit code 1;
- Ctrl-C or SIGTERM: ``PROG: interrupted (Ctrl-C, SIGINT)`` / ``PROG: stopped by SIGTERM`` plus
  the command's ``interrupted_note`` (e.g. that nothing was written), exit code 130 / 143.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable

from nnunet_deconver.errors import DeconverError, os_error_message
from nnunet_deconver.signals import Terminated, interruption_exit, termination_raises

#: ``interrupted_note`` of the commands whose output is swapped in only once complete.
NOTHING_WRITTEN = "; stopped before completion, nothing was written"


def report_errors(prog: str, parse: Callable[[], argparse.Namespace]) -> int:
    """Parse the arguments with ``parse`` and run ``args.func(args)``; return its exit code.

    SIGTERM raises inside (:func:`~nnunet_deconver.signals.termination_raises`), so ``with``
    blocks clean up as for Ctrl-C. A command sets ``interrupted_note`` among its parser's
    defaults to add to the interruption line.
    """
    note = ""
    try:
        with termination_raises():
            args = parse()
            note = getattr(args, "interrupted_note", "")
            return int(args.func(args) or 0)
    except DeconverError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        return interruption_exit(exc, prog, note)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)
