"""Errors, warnings and guarded file access shared by the evaluation modules.

Every problem with an input or output path becomes an :class:`EvaluationError` whose message names
the path and says what is wrong (missing, a folder instead of a file, permission denied, not
valid JSON, ...); the command line prints it as one line, without a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any

__all__ = ["EvaluationError", "warn", "os_problem", "load_json_file", "require_folder",
           "check_output_folder"]


class EvaluationError(RuntimeError):
    """A missing or unreadable file, an inconsistent input; the message names what is wrong."""


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def os_problem(exc: OSError) -> str:
    """What an operating-system error means, in a few words."""
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno is None:  # raised by a library (e.g. an image decoder), not by the system
        return f"damaged or unreadable file ({exc})"
    return exc.strerror or str(exc)


def load_json_file(path: str, what: str) -> Any:
    """Parse a JSON file; :class:`EvaluationError` naming ``path`` if it cannot be read or parsed."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    if os.path.isdir(path):
        raise EvaluationError(f"{what} {path} is a folder, not a file")
    if not os.path.lexists(path):
        raise EvaluationError(f"{what} not found: {path}")
    try:
        return load_json(path)
    except OSError as e:
        raise EvaluationError(f"cannot read {what} {path}: {os_problem(e)}") from None
    except UnicodeDecodeError as e:
        raise EvaluationError(f"{what} {path} is not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise EvaluationError(f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno}, "
                              f"column {e.colno}") from None


def require_folder(path: str, what: str) -> None:
    """:class:`EvaluationError` unless ``path`` is a readable folder."""
    if not os.path.lexists(path):
        raise EvaluationError(f"{what} not found: {path}")
    if os.path.islink(path) and not os.path.exists(path):
        raise EvaluationError(f"{what} {path} is a broken or looping symbolic link")
    if not os.path.isdir(path):
        raise EvaluationError(f"{what} {path} is a file, not a folder")
    try:
        os.listdir(path)
    except OSError as e:
        raise EvaluationError(f"cannot read {what} {path}: {os_problem(e)}") from None


def check_output_folder(path: str) -> None:
    """Refuse an output folder that is a file or cannot be created / written, before any work.

    Creates the folder (and its parents) if needed and writes and removes a probe file in it.
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise EvaluationError(f"output folder {path} is a file (or a broken link), not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise EvaluationError(f"output folder {path} is not writable: {os_problem(e)}") from None
