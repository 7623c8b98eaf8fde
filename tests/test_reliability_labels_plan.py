"""`nnunet-deconver brats-labels` is all or nothing; `nnunet-deconver plan` names a broken plans
file; any subcommand ends Ctrl-C, SIGTERM and operating-system errors in one line.

Each case checks the exit code, the message (names the file, says the problem, no traceback) and
that nothing outside the temporary folder changed.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from _conversion_safety import check_error, cli, no_hidden_leftovers, tree, unreadable, unwritable
from _conversion_synth import read_nifti, write_nifti
from nnunet_deconver.signals import Terminated

QUIET = ["-j", "1", "--no-progress"]


def _predictions(folder: Path, n: int = 3) -> list[Path]:
    """Dataset502-style predictions (labels 0-3)."""
    rng = np.random.default_rng(0)
    return [write_nifti(folder / f"BraTS-GLI-{i:05d}-000.nii.gz", rng.integers(0, 4, (4, 5, 6)).astype(np.uint8))
            for i in range(n)]


def _labels(tmp_path, capsys, argv, *needles, absent=()) -> str:
    before = tree(tmp_path)
    code, _, err = cli(["brats-labels", *argv, *QUIET], capsys)
    check_error(code, err, *needles)
    for word in absent:
        assert word not in err, err
    assert tree(tmp_path) == before
    return err


def test_one_bad_prediction_writes_nothing(tmp_path, capsys):
    files = _predictions(tmp_path / "pred")
    write_nifti(files[1], np.full((4, 5, 6), 7, np.uint8))
    _labels(tmp_path, capsys, [tmp_path / "pred", tmp_path / "out"], files[1], "outside {0, 1, 2, 3}: [7]",
            "nothing was written")
    assert not (tmp_path / "out").exists()
    no_hidden_leftovers(tmp_path)


def test_earlier_output_is_never_mixed_with_new_files(tmp_path, capsys):
    _predictions(tmp_path / "pred", n=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "BraTS-GLI-00099-000.nii.gz").write_bytes(b"from an earlier run")
    _labels(tmp_path, capsys, [tmp_path / "pred", out], out, "already exists; pass --overwrite")
    code, _, err = cli(["brats-labels", tmp_path / "pred", out, *QUIET, "--overwrite"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [f"BraTS-GLI-{i:05d}-000.nii.gz" for i in range(3)]
    no_hidden_leftovers(tmp_path)


def test_existing_empty_output_folder_is_used(tmp_path, capsys):
    files = _predictions(tmp_path / "pred", n=2)
    (tmp_path / "out").mkdir()
    code, _, err = cli(["brats-labels", tmp_path / "pred", tmp_path / "out", *QUIET], capsys)
    assert code == 0, err
    array, _ = read_nifti(tmp_path / "out" / files[0].name)
    expected = np.array([0, 2, 1, 3], np.uint8)[read_nifti(files[0])[0]]
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize("kind", ["file", "below a file", "not writable", "holds the input"])
def test_unusable_output_folder(tmp_path, capsys, monkeypatch, kind):
    pred = tmp_path / "pred"
    _predictions(pred)
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("")
        needles = [out, "is a file, not a folder"]
    elif kind == "below a file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
        needles = [tmp_path / "file", "is a file, not a folder"]
    elif kind == "holds the input":
        out, needles = tmp_path, [tmp_path, "lies inside the output folder"]
    else:
        (tmp_path / "locked").mkdir()
        out = tmp_path / "locked" / "out"
        needles = [f"cannot write into {tmp_path / 'locked'}"]
    if kind == "not writable":
        with unwritable(tmp_path / "locked", monkeypatch):
            _labels(tmp_path, capsys, [pred, out, "--overwrite"], *needles)
    else:
        _labels(tmp_path, capsys, [pred, out, "--overwrite"], *needles)


@pytest.mark.parametrize("kind", ["folder", "unreadable", "missing input folder"])
def test_unusable_input(tmp_path, capsys, monkeypatch, kind):
    files = _predictions(tmp_path / "pred")
    if kind == "folder":
        files[2].unlink()
        files[2].mkdir()
        _labels(tmp_path, capsys, [tmp_path / "pred", tmp_path / "out"], files[2], "is a folder, not a file")
    elif kind == "unreadable":
        with unreadable(files[0], monkeypatch):
            _labels(tmp_path, capsys, [tmp_path / "pred", tmp_path / "out"], files[0], "permission denied",
                    absent=["damaged"])
    else:
        _labels(tmp_path, capsys, [tmp_path / "nope", tmp_path / "out"], tmp_path / "nope", "does not exist")


# ---------------------------------------------------------------------------- plan


@pytest.mark.parametrize("content, needle", [
    ("{\"configurations\": {", "is not valid JSON (Expecting"),
    ("", "is empty"),
    ("  \n", "is empty"),
    ("[1, 2]", "is not an nnU-Net plans file"),
    ('{"configurations": {"3d_fullres": 3}}', "is not an nnU-Net plans file"),
    ('{"configurations": {"3d_fullres": {"architecture": {}}}}', "is malformed"),
    (b"\xff\xfe\x00\x81", "is not a text file"),
    (None, "is a folder, not a file"),
    ("unreadable", "permission denied"),
    ("absent", "does not exist: the data set has not been planned yet"),
], ids=["truncated", "empty", "blank", "list", "config-number", "no-arch", "binary", "folder", "unreadable",
        "absent"])
def test_plan_with_broken_plans_file(tmp_path, nnunet_env, capsys, monkeypatch, content, needle):
    plans = Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset901_Test" / "nnUNetPlans.json"
    plans.parent.mkdir()
    if content is None:
        plans.mkdir()
    elif isinstance(content, bytes):
        plans.write_bytes(content)
    elif content == "unreadable":
        plans.write_text('{"configurations": {}}')
    elif content != "absent":
        plans.write_text(content)
    with unreadable(plans, monkeypatch) if content == "unreadable" else _nothing():
        before = tree(tmp_path)
        code, out, err = cli(["plan", "901", "--preset", "isles22"], capsys)
    assert code == 1 and "Traceback" not in err, err
    assert err.startswith("nnunet-deconver: error: ") and str(plans) in err and needle in err, err
    assert tree(tmp_path) == before


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------- any subcommand


@pytest.mark.parametrize("raised, code, needle", [
    (KeyboardInterrupt(), 130, "nnunet-deconver: interrupted (Ctrl-C, SIGINT)"),
    (Terminated(signal.SIGTERM), 143, "nnunet-deconver: stopped by SIGTERM"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.json"), 1,
     "nnunet-deconver: error: /data/x.json: permission denied"),
], ids=["ctrl-c", "sigterm", "oserror"])
def test_any_subcommand_ends_in_one_line(nnunet_env, capsys, monkeypatch, raised, code, needle):
    from nnunet_deconver.nnunet import plans

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(plans, "write_preset_plans", fail)
    exit_code, out, err = cli(["plan", "901", "--preset", "isles22"], capsys)
    assert exit_code == code and err == needle + "\n", err


def test_sigterm_raises_inside_the_command(nnunet_env, capsys, monkeypatch):
    """A real SIGTERM to this process while a subcommand runs ends it like Ctrl-C (exit 143)."""
    from nnunet_deconver.nnunet import plans

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(plans, "write_preset_plans", killed)
    exit_code, _, err = cli(["plan", "901", "--preset", "isles22"], capsys)
    assert exit_code == 143 and err == "nnunet-deconver: stopped by SIGTERM\n", err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "handler restored"
