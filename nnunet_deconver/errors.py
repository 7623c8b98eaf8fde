"""The project's errors: one base class for every problem a user can fix, and one way to put an
operating-system error into words.

:class:`DeconverError` is the base of the areas' own errors (the conversion's, the evaluation's,
the preset plans'); the command line prints any of them as one ``PROG: error: MESSAGE`` line with
exit code 1.

``convert``, ``brats-labels``, ``plan`` and the top-level command turn an :class:`OSError` into one
line with :func:`os_error_message`: the file, what was being done and the
reason in plain words (``permission denied``, ``no space left on device``, ``symbolic link loop``),
never a traceback. :func:`path_problem` tells why a path cannot be used as a file or folder
(instead of calling it "missing" when it is really unreadable, a folder or a link loop).

Standard library only.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: errno -> the reason as printed.
_REASONS: dict[int, str] = {
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ELOOP: "symbolic link loop",
    errno.ENAMETOOLONG: "file name too long",
    errno.EEXIST: "already exists",
    errno.ENOTEMPTY: "folder is not empty",
    errno.EIO: "input/output error (damaged disk or lost network share?)",
    errno.EXDEV: "on another file system",
    errno.EMFILE: "too many open files",
    errno.EBUSY: "device or resource busy",
}


class DeconverError(Exception):
    """A problem with the user's input or output (bad or missing file, refused target, wrong data
    set): the message names the file or case and says what is wrong and, where it can, what to do.

    The command line prints it as one line, ``PROG: error: MESSAGE``, and exits with code 1.
    """


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (another library's, e.g. nnU-Net's, may span several)."""
    return " ".join(str(exc).split())


def describe_os_error(exc: OSError) -> str:
    """The reason of ``exc`` in a few words, e.g. ``permission denied``.

    An ``OSError`` without an error number comes from a library reading a file (an image decoder,
    a decompressor), not from the system: the file is damaged or not what its name says.
    """
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    if exc.errno is None:
        return f"damaged or unreadable file ({exc})"
    return (exc.strerror or str(exc) or type(exc).__name__).rstrip(".").lower()


def os_error_message(exc: OSError, action: str | None = None, path: str | os.PathLike | None = None) -> str:
    """One line: ``cannot {action} {path}: {reason}``, or ``{path}: {reason}`` without an action.

    ``path`` defaults to the file(s) named by ``exc``.
    """
    target = path if path is not None else exc.filename
    reason = describe_os_error(exc)
    if exc.filename2 is not None and path is None:
        target = f"{exc.filename} -> {exc.filename2}"
    if action is None:
        return f"{target}: {reason}" if target is not None else reason
    if target is None:
        return f"cannot {action}: {reason}"
    return f"cannot {action} {target}: {reason}"


def path_problem(path: Path, expected: str) -> str | None:
    """Why ``path`` cannot be used as a ``"file"`` or ``"folder"`` (``expected``), or None.

    Distinguishes what :meth:`Path.is_file` folds into False: missing, a folder where a file is
    expected (or the other way round), a broken or looping symbolic link, no permission to look,
    a FIFO or device.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"{path} is a broken symbolic link (to {os.readlink(path)})"
        if exc.errno == errno.ENOENT:
            return f"{path} does not exist"
        return f"{path}: {describe_os_error(exc)}"
    if expected == "file":
        if stat.S_ISDIR(info.st_mode):
            return f"{path} is a folder, not a file"
        if not stat.S_ISREG(info.st_mode):
            return f"{path} is not a regular file (a pipe, socket or device)"
        if not os.access(path, os.R_OK):
            return f"{path}: permission denied (cannot read)"
    elif expected == "folder":
        if not stat.S_ISDIR(info.st_mode):
            return f"{path} is a file, not a folder"
        if not os.access(path, os.R_OK | os.X_OK):
            return f"{path}: permission denied (cannot list the folder)"
    else:
        raise ValueError(f"expected must be 'file' or 'folder', got {expected!r}")
    return None
