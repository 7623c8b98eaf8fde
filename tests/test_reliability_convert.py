"""`nnunet-deconver convert` never loses data: source/target overlap, concurrent runs, signals,
leftovers of killed runs, symbolic links as target.

Each case checks the exit code, the message (names the file, says the problem, no traceback) and
that nothing outside the run's temporary folder changed (a snapshot of the whole tree).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _conversion_safety import check_error, cli, cli_process, command, no_hidden_leftovers, tree
from _conversion_synth import make_glas
from dataset_conversion import _convert

NAME = "Dataset503_GlaS"
QUIET = ["-j", "1", "--no-progress"]


def _old_dataset(folder: Path) -> None:
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text('{"old": true}')
    (folder / "imagesTr" / "old_0000.png").write_bytes(b"old image")


@pytest.mark.parametrize("layout", ["raw inside target", "raw is target", "target inside raw", "link into target"])
@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no-overwrite"])
def test_source_and_target_overlap_is_refused_before_anything_moves(tmp_path, nnunet_env, capsys, layout, overwrite):
    root = Path(nnunet_env["nnUNet_raw"])
    target, extra = root / NAME, []
    if layout == "raw inside target":
        raw = target / "download"
        make_glas(raw)
        _old_dataset(target)
        needles = [raw, "lies inside the output data set", "Move the source out"]
    elif layout == "raw is target":
        raw = target
        make_glas(raw)
        needles = [raw, "is the output data set", "Choose another output location"]
    elif layout == "target inside raw":
        raw = tmp_path / "glas"
        make_glas(raw)
        extra = ["--output-root", raw]
        needles = [raw, "would be written inside", "choose an output location outside"]
    else:
        make_glas(target / "download")
        _old_dataset(target)
        raw = tmp_path / "link"
        raw.symlink_to(target / "download")
        needles = [raw, "lies inside the output data set"]
    before = tree(tmp_path)
    code, _, err = cli(["convert", "glas", raw, *QUIET, *extra] + (["--overwrite"] if overwrite else []), capsys)
    check_error(code, err, *needles)
    assert tree(tmp_path) == before


def test_target_that_appears_during_the_run_is_never_replaced(tmp_path, nnunet_env, capsys, monkeypatch):
    """Another program creates the (empty) target while the conversion works: plain rename would replace it."""
    raw, root = tmp_path / "glas", Path(nnunet_env["nnUNet_raw"])
    make_glas(raw)
    write_files = _convert.write_dataset_files

    def write_then_someone_creates_target(definition, folder, *args):
        write_files(definition, folder, *args)
        (root / NAME).mkdir()

    monkeypatch.setattr(_convert, "write_dataset_files", write_then_someone_creates_target)
    before = tree(tmp_path)
    code, _, err = cli(["convert", "glas", raw, *QUIET], capsys)
    check_error(code, err, root / NAME, "appeared while this run was working", "not replaced")
    assert tree(tmp_path) == {**before, f"nnUNet_raw/{NAME}": "dir"}
    no_hidden_leftovers(root)


def test_final_move_never_replaces_an_empty_folder(tmp_path):
    """Plain rename() silently replaces an empty folder; the final move must not."""
    from dataset_conversion._output import rename_no_replace

    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "file").write_text("new")
    (tmp_path / "target").mkdir()
    with pytest.raises(FileExistsError):
        rename_no_replace(tmp_path / "new", tmp_path / "target")
    assert tree(tmp_path) == {"new": "dir", "new/file": b"new", "target": "dir"}
    rename_no_replace(tmp_path / "new", tmp_path / "fresh")
    assert tree(tmp_path) == {"fresh": "dir", "fresh/file": b"new", "target": "dir"}


def _hold_lock(target: Path, env: dict) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from dataset_conversion._output import output_lock\n"
            "with output_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(target)], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_second_run_says_another_run_holds_the_target(tmp_path, nnunet_env, capsys):
    raw, root = tmp_path / "glas", Path(nnunet_env["nnUNet_raw"])
    make_glas(raw)
    holder = _hold_lock(root / NAME, nnunet_env)
    try:
        before = tree(tmp_path)
        code, _, err = cli(["convert", "glas", raw, *QUIET], capsys)
        check_error(code, err, f"another run is writing {root / NAME} right now (process {holder.pid}")
        assert tree(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()


def _wait_for_temporary_folder(root: Path, process: subprocess.Popen, timeout: float = 120) -> Path:
    """The run's hidden temporary folder, once it holds a converted image."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tmp in root.glob(f".{NAME}.tmp-*"):
            if any((tmp / "imagesTr").glob("*.png")):
                return tmp
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise AssertionError("no temporary folder appeared")


@pytest.fixture
def big_glas(tmp_path) -> Path:
    """Enough pixels that a run takes a few seconds, so that it can be caught mid-way."""
    raw = tmp_path / "glas"
    make_glas(raw, counts=(("train", 6), ("testA", 6), ("testB", 6)), shape=(360, 480))
    return raw


def test_concurrent_conversions_into_one_absent_target(tmp_path, nnunet_env, big_glas):
    root = Path(nnunet_env["nnUNet_raw"])
    first = subprocess.Popen(command(["convert", "glas", big_glas, *QUIET]), env=nnunet_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_temporary_folder(root, first)
    second = cli_process(["convert", "glas", big_glas, *QUIET], nnunet_env)
    if first.poll() is None:  # the first run was still working all along: the lock must have stopped the second
        assert "another run is writing" in second.stderr and f"process {first.pid}" in second.stderr, second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    check_error(second.returncode, second.stderr, root / NAME)
    assert ("another run is writing" in second.stderr or "already exists" in second.stderr), second.stderr
    metadata = json.loads((root / NAME / "case_metadata.json").read_text())
    assert len(metadata["cases"]) == 18 and len(list((root / NAME / "imagesTr").iterdir())) == 18
    no_hidden_leftovers(root)


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_signal_mid_run_removes_temporary_folder(tmp_path, nnunet_env, big_glas, signum, exit_code):
    """SIGTERM to the main process (``kill``, ``timeout``); SIGINT to the whole process group, main
    process and two workers, as Ctrl-C in a terminal sends it."""
    root = Path(nnunet_env["nnUNet_raw"])
    _old_dataset(root / NAME)
    before = tree(tmp_path)
    workers = ["-j", "1"] if signum == signal.SIGTERM else ["-j", "2"]
    # Ctrl-C as a terminal delivers it: a shell starts background jobs with SIGINT ignored, which a
    # run would inherit (and then rightly ignore), so the test restores the default for the run
    run = subprocess.Popen(command(["convert", "glas", big_glas, *workers, "--no-progress", "--overwrite"]),
                           env=nnunet_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_temporary_folder(root, run)
    if signum == signal.SIGINT:
        os.killpg(run.pid, signum)
    else:
        run.send_signal(signum)
    _, err = run.communicate(timeout=120)
    assert run.returncode == exit_code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert signal.Signals(signum).name in err or "Ctrl-C" in err
    assert tree(tmp_path) == before, "old data set intact, temporary folder removed"


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(tmp_path, nnunet_env, big_glas):
    root = Path(nnunet_env["nnUNet_raw"])
    run = subprocess.Popen(command(["convert", "glas", big_glas, *QUIET]), env=nnunet_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    leftover = _wait_for_temporary_folder(root, run)
    run.kill()
    run.wait()
    assert leftover.is_dir(), "SIGKILL cannot be caught: the folder stays"
    proc = cli_process(["convert", "glas", big_glas, *QUIET], nnunet_env)
    assert proc.returncode == 0, proc.stderr
    assert f"note: removed {leftover}, left by an interrupted run (process {run.pid})" in proc.stdout
    assert sorted(p.name for p in root.iterdir()) == [NAME]


def test_leftovers_of_a_live_process_are_named_and_kept_and_a_half_replaced_target_is_restored(
        tmp_path, nnunet_env, capsys):
    raw, root = tmp_path / "glas", Path(nnunet_env["nnUNet_raw"])
    make_glas(raw)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = root / f".{NAME}.tmp-{sleeper.pid}-0badc0de"
        live.mkdir()
        old = root / f".{NAME}.old-999999999-0badf00d"  # killed between renaming the old one aside and the new in
        _old_dataset(old)
        old_state = tree(old)
        code, out, err = cli(["convert", "glas", raw, *QUIET], capsys)
        assert code == 1 and "Traceback" not in err
        assert f"note: put {root / NAME} back from {old.name}" in out
        assert f"note: left {live} alone: process {sleeper.pid}, which made it, is still running" in out
        assert f"output {root / NAME} already exists; pass --overwrite" in err
        assert tree(root / NAME) == old_state and live.is_dir() and not old.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_overwrite_through_a_symlinked_target_keeps_the_link(tmp_path, nnunet_env, capsys):
    raw, root = tmp_path / "glas", Path(nnunet_env["nnUNet_raw"])
    make_glas(raw)
    real = tmp_path / "big-disk" / NAME
    _old_dataset(real)
    (root / NAME).symlink_to(real)
    code, out, err = cli(["convert", "glas", raw, *QUIET, "--overwrite"], capsys)
    assert code == 0, err
    assert (root / NAME).is_symlink() and os.readlink(root / NAME) == str(real)
    assert json.loads((real / "dataset.json").read_text())["numTraining"] == 10
    assert not (real / "imagesTr" / "old_0000.png").exists()
    assert sorted(p.name for p in real.parent.iterdir()) == [NAME] and sorted(os.listdir(root)) == [NAME]


@pytest.mark.parametrize("kind", ["broken link", "file"])
def test_target_that_is_no_folder_is_refused_even_with_overwrite(tmp_path, nnunet_env, capsys, kind):
    raw, root = tmp_path / "glas", Path(nnunet_env["nnUNet_raw"])
    make_glas(raw)
    if kind == "broken link":
        (root / NAME).symlink_to(tmp_path / "gone")
        needle = "is a broken symbolic link"
    else:
        (root / NAME).write_text("not a data set")
        needle = "is a file, not a folder"
    before = tree(tmp_path)
    code, _, err = cli(["convert", "glas", raw, *QUIET, "--overwrite"], capsys)
    check_error(code, err, root / NAME, needle, "remove or rename it yourself")
    assert tree(tmp_path) == before


def test_signal_during_the_final_move_lets_the_move_finish(tmp_path, nnunet_env, capsys, monkeypatch):
    """A signal between renaming the old data set aside and the new one in must not leave neither."""
    from dataset_conversion import _output

    raw, root = tmp_path / "glas", Path(nnunet_env["nnUNet_raw"])
    make_glas(raw)
    _old_dataset(root / NAME)
    rename = _output.rename_no_replace

    def rename_after_sigterm(source, target):
        os.kill(os.getpid(), signal.SIGTERM)
        rename(source, target)

    monkeypatch.setattr(_output, "rename_no_replace", rename_after_sigterm)
    code, out, err = cli(["convert", "glas", raw, *QUIET, "--overwrite"], capsys)
    assert code == 0, err
    assert "note: SIGTERM arrived while the finished output was being moved into place" in out
    assert json.loads((root / NAME / "dataset.json").read_text())["numTraining"] == 10
    assert sorted(os.listdir(root)) == [NAME]
