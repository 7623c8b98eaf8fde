"""Writing an output folder so that nothing is lost, mixed or half-written.

:func:`atomic_output_folder` gives a hidden temporary folder beside the target and moves it into
place only when the ``with`` block succeeds:

- a lock file (``.<target>.lock`` beside it, :func:`fcntl.flock`) is held from before the target
  is checked until after the move, so two runs into one target never overlap: the second says that
  the first is running and stops;
- the final move is ``renameat2(RENAME_NOREPLACE)``: it never replaces a target that appeared in
  the meantime (plain ``rename`` would silently replace an empty folder); only with ``overwrite``
  is an existing target renamed aside first and deleted once the new one is in place;
- a symbolic link as target is followed: the folder it points to is replaced and the link stays;
- leftovers of killed runs (``.<target>.tmp-<pid>-*``, ``.<target>.old-<pid>-*``) whose process no
  longer exists are removed (an old data set caught between the two renames is put back first);
  those of a live process are named and left alone.

:func:`overlap_problem` refuses a source and target that contain each other; the target's folder is
checked for writability (also by ``--dry-run``) by :func:`writable_problem`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import secrets
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dataset_conversion._model import ConversionError
from nnunet_deconver.errors import os_error_message, path_problem
from nnunet_deconver.signals import deferred_signals

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def overlap_problem(source: Path, target: Path, source_what: str, target_what: str) -> str | None:
    """Why ``target`` must not be written given ``source`` (symbolic links resolved), or None.

    Replacing a target that holds the source would delete the source; writing a target inside the
    source would change the source.
    """
    src, dst = _real(source), _real(target)
    if src == dst:
        return (f"{source_what} {source} is the {target_what} {target} itself; writing it would destroy the "
                f"source. Choose another output location.")
    if dst in src.parents:
        return (f"{source_what} {source} lies inside the {target_what} {target}; replacing {target} would delete "
                f"it. Move the source out of {target} (e.g. next to it) and run again.")
    if src in dst.parents:
        return (f"the {target_what} {target} would be written inside {source_what} {source}; choose an output "
                f"location outside {source}.")
    return None


def writable_problem(folder: Path) -> str | None:
    """Why nothing can be written into ``folder`` (or into the folder that would hold it), or None.

    Creates and removes a hidden probe folder, which tests what ``chmod``, a read-only mount and a
    full disk really allow (``os.access`` would not, for root).
    """
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    problem = path_problem(existing, "folder")
    if problem:
        return f"cannot write into {folder}: {problem}"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nnunet-deconver-write-test-", dir=existing))
    except OSError as exc:
        return f"cannot write into {folder}: {os_error_message(exc, 'create a folder in', existing)}"
    return None


def rename_no_replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; :class:`FileExistsError` if ``target`` exists (even empty)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: file system without RENAME_NOREPLACE
            raise OSError(code, os.strerror(code), str(source), None, str(target))
    if os.path.lexists(target):  # fallback: the lock keeps our own runs apart
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def output_lock(target: Path) -> Iterator[Path]:
    """Hold ``.<target>.lock`` beside ``target``; :class:`ConversionError` if another run holds it."""
    path = target.parent / f".{target.name}.lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConversionError(os_error_message(exc, "create the lock file", path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"process {holder}" if holder.isdigit() else "another process"
                raise ConversionError(f"another run is writing {target} right now ({who} holds {path}); wait "
                                      f"until it has finished, then run again") from None
            raise ConversionError(os_error_message(exc, "lock", path)) from None
        try:  # the previous holder may have removed the file between our open and flock
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def _remove(path: Path) -> str | None:
    """Delete a file, link or folder tree; the problem if something is left."""
    if path.is_symlink() or not path.is_dir():
        try:
            path.unlink()
        except OSError as exc:
            return os_error_message(exc, "remove", path)
        return None
    failures: list[str] = []
    shutil.rmtree(path, onerror=lambda func, name, info: failures.append(os_error_message(info[1], "remove", name)))
    return failures[0] if failures else None


def clean_leftovers(target: Path) -> list[str]:
    """Remove what killed runs left beside ``target`` (call with the lock held); return notes."""
    notes: list[str] = []
    leftovers = []
    for entry in sorted(target.parent.iterdir()):
        match = _LEFTOVER.match(entry.name)
        if match and match["name"] == target.name:
            leftovers.append((entry, match["kind"], int(match["pid"])))
    for entry, kind, pid in leftovers:
        if pid != os.getpid() and _pid_alive(pid):
            notes.append(f"left {entry} alone: process {pid}, which made it, is still running")
            continue
        if kind == "old" and not os.path.lexists(target):
            os.rename(entry, target)  # killed between its two renames: the old data set goes back
            notes.append(f"put {target} back from {entry.name}, left by a run (process {pid}) killed while "
                         f"replacing it")
            continue
        problem = _remove(entry)
        notes.append(problem or f"removed {entry}, left by an interrupted run (process {pid})")
    return notes


def existing_target_problem(target: Path, overwrite: bool, allow_empty: bool) -> str | None:
    """Why ``target`` must not be replaced, or None."""
    if not os.path.lexists(target):
        return None
    problem = path_problem(target, "folder")
    if problem:
        return f"output {target} exists but cannot be replaced: {problem}; remove or rename it yourself"
    if allow_empty and not any(target.iterdir()):
        return None
    if not overwrite:
        return (f"output {target} already exists; pass --overwrite to replace it (the old folder is removed "
                f"only once the new one is complete)")
    return None


def _commit(tmp: Path, target: Path, overwrite: bool, allow_empty: bool, notes: list[str]) -> None:
    """Move ``tmp`` into place at ``target`` (renaming an old ``target`` aside); never half-done."""
    old = None
    appeared = (f"output {target} appeared while this run was working (made by another program); it was not "
                f"replaced and the new output was discarded")
    if os.path.lexists(target):
        problem = existing_target_problem(target, overwrite, allow_empty)
        if problem:
            _remove(tmp)
            raise ConversionError(appeared if "already exists" in problem else problem)
        if allow_empty and not any(target.iterdir()):
            target.rmdir()
        else:
            old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
            os.rename(target, old)
    try:
        rename_no_replace(tmp, target)
    except OSError as exc:
        if old is not None and not os.path.lexists(target):
            os.rename(old, target)
        _remove(tmp)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise ConversionError(appeared) from None
        raise ConversionError(os_error_message(exc, "move the new output into place at", target)) from None
    if old is not None:
        problem = _remove(old)
        if problem:
            notes.append(f"the new {target} is in place, but the old one could not be removed completely: {problem}")


@contextmanager
def atomic_output_folder(target: Path, overwrite: bool = False, allow_empty: bool = False,
                         notes: list[str] | None = None) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``target`` that replaces ``target`` on success.

    On an exception, Ctrl-C or SIGTERM (see :mod:`dataset_conversion._signals`) the temporary
    folder is deleted and ``target`` is untouched. An existing ``target`` is refused unless
    ``overwrite`` (or ``allow_empty`` and it is an empty folder). ``notes`` collects what the user
    should hear (leftovers removed, an old folder that could not be deleted).
    """
    notes = [] if notes is None else notes
    if target.is_symlink() and os.path.exists(target):
        target = _real(target)  # replace what the link points to; the link stays
    problem = existing_target_problem(target, overwrite, allow_empty)
    if problem:
        raise ConversionError(problem)
    problem = writable_problem(target.parent)
    if problem:
        raise ConversionError(problem)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConversionError(os_error_message(exc, "create the output folder", target.parent)) from None
    with output_lock(target):
        notes.extend(clean_leftovers(target))
        problem = existing_target_problem(target, overwrite, allow_empty)  # again: now no other run can act
        if problem:
            raise ConversionError(problem)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
        except OSError as exc:
            raise ConversionError(os_error_message(exc, "create the temporary folder", tmp)) from None
        try:
            yield tmp
        except BaseException:
            with deferred_signals():
                _remove(tmp)
            raise
        with deferred_signals(raise_after=False) as pending:
            try:
                _commit(tmp, target, overwrite, allow_empty, notes)
            except OSError as exc:
                _remove(tmp)
                raise ConversionError(os_error_message(exc, "move the new output into place at", target)) from None
        if pending:  # the work was done: finishing took milliseconds, undoing it would lose it
            names = ", ".join(sorted({signal.Signals(s).name for s in pending}))
            notes.append(f"{names} arrived while the finished output was being moved into place; the move was "
                         f"completed first")
