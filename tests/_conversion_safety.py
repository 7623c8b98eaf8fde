"""Helpers of the reliability tests: the real command line, tree snapshots, protected paths.

Permission cases need a process that the file mode stops. As a normal user the tests ``chmod`` for
real. As root (CI), ``chmod`` stops nothing, so: a folder is made unwritable with ``chattr +i``
(immutable, which stops root too) where the file system allows it; an unreadable file or folder is
simulated in-process by making the reading calls (``open``, ``os.listdir``, ``os.scandir``) fail with
EACCES for that path, which is what the kernel would do.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

BIN = Path(sys.executable).parent
IS_ROOT = os.geteuid() == 0


def tree(root: Path) -> dict[str, object]:
    """Everything under ``root``: file bytes, folder marks, link targets (links not followed)."""
    state: dict[str, object] = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(parent) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif path.is_dir():
                state[key] = "dir"
            else:
                try:
                    state[key] = path.read_bytes()
                except PermissionError:
                    state[key] = ("unreadable", path.stat().st_size)
    return state


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``nnunet-deconver ARGV`` in this process (its ``main``); (exit code, stdout, stderr)."""
    from nnunet_deconver.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def command(args: list[str]) -> list[str]:
    return [str(BIN / "nnunet-deconver"), *[str(a) for a in args]]


def cli_process(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """``nnunet-deconver ARGS`` as a real process (no check of the exit code)."""
    return subprocess.run(command(args), env=env, capture_output=True, text=True, timeout=timeout)


def check_error(code: int, err: str, *needles: str, expected_code: int = 1) -> None:
    """Exit code, one ``error:`` message holding every needle, no traceback."""
    assert code == expected_code, err
    assert "Traceback" not in err, err
    assert "error:" in err, err
    for needle in needles:
        assert str(needle) in err, f"{needle!r} not in:\n{err}"


def no_hidden_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


# ---------------------------------------------------------------------------- protected paths


def _chattr(flag: str, path: Path) -> bool:
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@contextmanager
def unwritable(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Nothing can be created in ``folder``; yields how (``chmod``, ``chattr`` or ``simulated``)."""
    if not IS_ROOT:
        folder.chmod(0o555)
        try:
            yield "chmod"
        finally:
            folder.chmod(0o755)
        return
    if _chattr("+i", folder):
        try:
            yield "chattr"
        finally:
            _chattr("-i", folder)
        return
    real_mkdir, real_open = os.mkdir, os.open

    def inside(path) -> bool:
        return Path(os.path.abspath(path)).parent == folder

    def mkdir(path, *args, **kwargs):
        if inside(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_mkdir(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and inside(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    yield "simulated"


@contextmanager
def unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``path`` (a file or folder) cannot be read; yields how (``chmod`` or ``simulated``)."""
    if not IS_ROOT:
        mode = path.stat().st_mode
        path.chmod(0)
        try:
            yield "chmod"
        finally:
            path.chmod(mode)
        return
    denied = os.path.abspath(path)

    def guard(real):
        def wrapper(target=".", *args, **kwargs):
            if not isinstance(target, int) and os.path.abspath(os.fspath(target)) == denied:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(target))
            return real(target, *args, **kwargs)
        return wrapper

    for module, name in ((builtins, "open"), (io, "open"), (os, "listdir"), (os, "scandir")):
        monkeypatch.setattr(module, name, guard(getattr(module, name)))
    yield "simulated"
