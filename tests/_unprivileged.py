"""Run a command so that file permissions apply to it, also when the tests run as root.

Root reads and writes whatever ``chmod`` forbids because it holds the capabilities
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. ``setpriv`` (util-linux) starts a command without them:
it stays root, but the kernel then checks permission bits for it as for any user, so
``chmod 0`` and read-only folders refuse it for real. As a normal user the command runs as it is.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile

import pytest

_DROP = "-dac_override,-dac_read_search"


@functools.lru_cache(maxsize=1)
def _setpriv() -> list[str] | None:
    exe = shutil.which("setpriv")
    if exe is None:
        return None
    cmd = [exe, f"--inh-caps={_DROP}", f"--bounding-set={_DROP}"]
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0)  # the probe: without the capabilities, root cannot list a folder of mode 0
        try:
            started = subprocess.run([*cmd, "true"], capture_output=True).returncode == 0
            refused = subprocess.run([*cmd, "ls", tmp], capture_output=True).returncode != 0
        finally:
            os.chmod(tmp, 0o700)
    return cmd if started and refused else None


def permission_checked(cmd: list[str]) -> list[str]:
    """``cmd``, prefixed so that the kernel applies permission bits to it.

    Skips the test where that is impossible (root without ``setpriv`` or without the right to drop
    capabilities): the permission cases then have not run, and the skip says so.
    """
    if os.geteuid() != 0:
        return cmd
    prefix = _setpriv()
    if prefix is None:
        pytest.skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here: permission bits do not apply")
    return [*prefix, *cmd]
