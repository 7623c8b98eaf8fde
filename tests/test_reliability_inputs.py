"""`nnunet-deconver convert` under bad inputs and bad output locations: refused with one clear
message (the file and the problem, no traceback), nothing outside the temporary folder changed;
files that belong to no case are reported as warnings.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from _conversion_safety import check_error, cli, tree, unreadable, unwritable
from _conversion_synth import make_brats, make_fives, make_glas, make_isles, write_nifti
from dataset_conversion import _images

QUIET = ["-j", "1", "--no-progress"]


def _refused(tmp_path, capsys, argv, *needles, absent=()) -> str:
    before = tree(tmp_path)
    code, _, err = cli(argv, capsys)
    check_error(code, err, *needles)
    for word in absent:
        assert word not in err, err
    assert tree(tmp_path) == before
    return err


# ---------------------------------------------------------------------------- silent acceptance


def test_case_ids_equal_up_to_letter_case(tmp_path, nnunet_env, capsys):
    raw = tmp_path / "brats"
    make_brats(raw, n_cases=5, shape=(6, 8, 8))
    shutil.copytree(raw / "BraTS-GLI-00001-000", raw / "BraTS-gli-00001-000")
    _refused(tmp_path, capsys, ["convert", "brats23", raw, *QUIET], "differ only in letter case",
             "BraTS-GLI-00001-000 (", "BraTS-gli-00001-000 (", raw / "BraTS-gli-00001-000")


@pytest.mark.parametrize("value, word", [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite")],
                         ids=["nan", "inf"])
def test_non_finite_voxels(tmp_path, nnunet_env, capsys, value, word):
    raw = tmp_path / "isles"
    cases = make_isles(raw, n_cases=5, shape=(6, 8, 8))
    case = cases["sub-strokecase0003"]
    dwi = case.channels[0].copy()
    dwi[2, 3, 4] = value
    write_nifti(case.files[0], dwi, case.spacing, case.origin)
    _refused(tmp_path, capsys, ["convert", "isles22", raw, *QUIET], f"the DWI file {case.files[0]} holds {word}")


@pytest.mark.parametrize("dataset", ["isles22 mask without subject", "isles22 folder", "brats23 folder",
                                     "brats23 file", "glas file", "fives folder"])
def test_files_of_no_case_are_reported_as_warnings(tmp_path, nnunet_env, capsys, dataset):
    raw = tmp_path / "raw"
    if dataset == "isles22 mask without subject":
        make_isles(raw, n_cases=6, shape=(6, 8, 8))
        shutil.rmtree(raw / "sub-strokecase0006")
        stray = raw / "derivatives" / "sub-strokecase0006"
    elif dataset == "isles22 folder":
        make_isles(raw, n_cases=5, shape=(6, 8, 8))
        stray = raw / "sub-strokecase0001 (copy)"
        shutil.copytree(raw / "sub-strokecase0001", stray)
    elif dataset.startswith("brats23"):
        make_brats(raw, n_cases=5, shape=(6, 8, 8))
        stray = raw / "BraTS-GLI-00001-000_old" if dataset.endswith("folder") else \
            raw / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t1.nii.gz"
        shutil.copy(raw / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t1n.nii.gz", stray) \
            if dataset.endswith("file") else shutil.copytree(raw / "BraTS-GLI-00001-000", stray)
    elif dataset == "glas file":
        make_glas(raw)
        stray = raw / "train_3 copy.bmp"
        shutil.copy(raw / "train_3.bmp", stray)
    else:
        make_fives(raw)
        stray = raw / "train" / "Masks (old)"
        stray.mkdir()
    key = dataset.split()[0]
    code, out, err = cli(["convert", key, raw, *QUIET, "--dry-run"], capsys)
    assert code == 0 and f"warning: {stray}" in out and "ignored" in out, out + err
    code, out, err = cli(["convert", key, raw, *QUIET], capsys)
    assert code == 0 and f"warning: {stray}" in out, out + err


# ---------------------------------------------------------------------------- not "missing"


def _brats(tmp_path) -> tuple[Path, Path]:
    raw = tmp_path / "brats"
    make_brats(raw, n_cases=5, shape=(6, 8, 8))
    return raw, raw / "BraTS-GLI-00002-000"


@pytest.mark.parametrize("kind, needle", [
    ("folder", "is a folder, not a file"),
    ("loop", "symbolic link loop"),
    ("broken link", "is a broken symbolic link"),
])
def test_modality_that_is_no_file_is_not_called_missing(tmp_path, nnunet_env, capsys, kind, needle):
    raw, case = _brats(tmp_path)
    t1c = case / "BraTS-GLI-00002-000-t1c.nii.gz"
    t1c.unlink()
    if kind == "folder":
        t1c.mkdir()
    elif kind == "loop":
        t1c.symlink_to(t1c.name)
    else:
        t1c.symlink_to(tmp_path / "elsewhere.nii.gz")
    _refused(tmp_path, capsys, ["convert", "brats23", raw, *QUIET], t1c, needle, absent=["missing"])


def test_unreadable_modality_is_permission_denied_not_damaged(tmp_path, nnunet_env, capsys, monkeypatch):
    raw, case = _brats(tmp_path)
    t2w = case / "BraTS-GLI-00002-000-t2w.nii.gz"
    with unreadable(t2w, monkeypatch):
        _refused(tmp_path, capsys, ["convert", "brats23", raw, *QUIET], t2w, "permission denied",
                 absent=["damaged", "truncated", "missing"])


def test_unreadable_case_folder_is_not_called_missing(tmp_path, nnunet_env, capsys, monkeypatch):
    raw, case = _brats(tmp_path)
    with unreadable(case, monkeypatch):
        _refused(tmp_path, capsys, ["convert", "brats23", raw, *QUIET], case, "permission denied",
                 absent=["missing"])


def test_unreadable_raw_folder(tmp_path, nnunet_env, capsys, monkeypatch):
    raw, _ = _brats(tmp_path)
    with unreadable(raw, monkeypatch):
        _refused(tmp_path, capsys, ["convert", "brats23", raw, *QUIET], raw, "permission denied")


def test_subject_folder_that_is_a_link_loop(tmp_path, nnunet_env, capsys):
    raw = tmp_path / "isles"
    make_isles(raw, n_cases=5, shape=(6, 8, 8))
    subject = raw / "sub-strokecase0004"
    shutil.rmtree(subject)
    subject.symlink_to(subject.name)
    _refused(tmp_path, capsys, ["convert", "isles22", raw, *QUIET], subject, "symbolic link loop")


@pytest.mark.parametrize("what", ["Grade.csv", "image"])
def test_glas_entry_that_is_a_folder(tmp_path, nnunet_env, capsys, what):
    raw = tmp_path / "glas"
    make_glas(raw)
    path = raw / ("Grade.csv" if what == "Grade.csv" else "train_3.bmp")
    path.unlink()
    path.mkdir()
    _refused(tmp_path, capsys, ["convert", "glas", raw, *QUIET], path, "is a folder, not a file", absent=["missing"])


def test_fives_original_that_is_a_file(tmp_path, nnunet_env, capsys):
    raw = tmp_path / "fives"
    make_fives(raw)
    original = raw / "test" / "Original"
    shutil.rmtree(original)
    original.write_text("")
    _refused(tmp_path, capsys, ["convert", "fives", raw, *QUIET], original, "is a file, not a folder",
             absent=["missing"])


def test_raw_folder_that_is_a_file(tmp_path, nnunet_env, capsys):
    (tmp_path / "glas.zip").write_bytes(b"PK")
    _refused(tmp_path, capsys, ["convert", "glas", tmp_path / "glas.zip", *QUIET], tmp_path / "glas.zip",
             "is a file, not a folder")


# ---------------------------------------------------------------------------- output root


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("kind", ["file", "below a file", "not writable"])
def test_unusable_output_root(tmp_path, nnunet_env, capsys, monkeypatch, kind, dry_run):
    raw = tmp_path / "glas"
    make_glas(raw)
    blocker = tmp_path / "blocker"
    if kind == "file":
        blocker.write_text("")
        root, needle = blocker, f"{blocker} is a file, not a folder"
    elif kind == "below a file":
        blocker.write_text("")
        root, needle = blocker / "nnUNet_raw", f"{blocker} is a file, not a folder"
    else:
        blocker.mkdir()
        root, needle = blocker, f"cannot write into {blocker}"
    argv = ["convert", "glas", raw, *QUIET, "--output-root", root] + (["--dry-run"] if dry_run else [])
    with unwritable(blocker, monkeypatch) if kind == "not writable" else _nothing():
        before = tree(tmp_path)
        code, out, err = cli(argv, capsys)
        assert tree(tmp_path) == before
    if dry_run:
        assert code == 1 and needle in out and "no problems found" not in out and "Traceback" not in err, out
    else:
        check_error(code, err, needle)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_disk_full_while_writing(tmp_path, nnunet_env, capsys, monkeypatch):
    raw = tmp_path / "glas"
    make_glas(raw)

    def full(array, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(_images, "write_png", full)
    err = _refused(tmp_path, capsys, ["convert", "glas", raw, *QUIET], "no space left on device",
                   "nothing was written", "train_1_0000.png")
    assert err.startswith("nnunet-deconver: error: ")
