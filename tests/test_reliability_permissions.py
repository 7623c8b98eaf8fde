"""Permission cases with the kernel's own refusal: real ``chmod``, the command in a real process.

As root (CI) the command runs without root's permission override (``_unprivileged``), so the
kernel refuses it what the permission bits forbid, exactly as for a normal user; as a normal user it
runs as it is. The simulated variants in ``test_reliability_inputs.py`` /
``test_reliability_labels_plan.py`` cover the same messages in-process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from _conversion_safety import check_error, tree
from _conversion_synth import make_brats, write_nifti
from _unprivileged import permission_checked


@pytest.fixture
def space(nnunet_env):
    """(a scratch folder, the environment) for a command whose permissions are checked."""
    env = dict(nnunet_env)
    base = Path(tempfile.mkdtemp(prefix="nnunet-deconver-permissions-"))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (base / name).mkdir()
        env[name] = str(base / name)
    try:
        yield base, env
    finally:
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base)


def _run_checked(args: list, env: dict) -> subprocess.CompletedProcess:
    cmd = permission_checked([sys.executable, "-m", "nnunet_deconver", *[str(a) for a in args]])
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("what", ["modality file", "case folder"])
def test_unreadable_input(space, what):
    base, env = space
    raw = base / "brats"
    make_brats(raw, n_cases=5, shape=(6, 8, 8))
    case = raw / "BraTS-GLI-00003-000"
    path = case / "BraTS-GLI-00003-000-t2w.nii.gz" if what == "modality file" else case
    path.chmod(0)
    before = tree(base)
    proc = _run_checked(["convert", "brats23", raw, "-j", "1", "--no-progress"], env)
    check_error(proc.returncode, proc.stderr, path, "permission denied")
    assert "missing" not in proc.stderr and "damaged" not in proc.stderr, proc.stderr
    assert tree(base) == before


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_read_only_output_root(space, dry_run):
    base, env = space
    raw = base / "brats"
    make_brats(raw, n_cases=5, shape=(6, 8, 8))
    root = Path(env["nnUNet_raw"])
    root.chmod(0o555)
    before = tree(base)
    proc = _run_checked(["convert", "brats23", raw, "-j", "1", "--no-progress"] + (["--dry-run"] if dry_run else []),
                      env)
    if dry_run:
        assert proc.returncode == 1 and f"cannot write into {root}" in proc.stdout, proc.stdout + proc.stderr
        assert "permission denied" in proc.stdout and "Traceback" not in proc.stderr
    else:
        check_error(proc.returncode, proc.stderr, f"cannot write into {root}", "permission denied")
    assert tree(base) == before


def test_brats_labels_into_read_only_folder(space):
    base, env = space
    pred = base / "pred"
    write_nifti(pred / "BraTS-GLI-00000-000.nii.gz", np.zeros((3, 4, 5), np.uint8))
    locked = base / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    before = tree(base)
    proc = _run_checked(["brats-labels", pred, locked / "out", "-j", "1", "--no-progress"], env)
    check_error(proc.returncode, proc.stderr, f"cannot write into {locked}", "permission denied")
    assert tree(base) == before
