"""A run folder belongs to one run: resume stays in the checkpoint's folder, a second writer is locked out,
every crash point of an epoch's commit leaves weights, metrics and summary agreeing (and resumes exactly),
SIGINT saves state, and a full disk keeps the previous checkpoint."""

import csv
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from attnzoo.errors import RunFolderError
from attnzoo.train import load_recipe, run_folder, train
from attnzoo.train.checkpoint import load_state
from attnzoo.train.run_lock import RunLock
from fuzz_helpers import assert_one_line_error, digest, run_cli
from train_helpers import ROOT, make_tiny_fashion_mnist, write_recipe


def _python(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_fashion_mnist(tmp_path_factory.mktemp("data"), train=64, test=32)  # 2 steps per epoch


def test_resume_into_another_runs_name_is_refused_and_changes_nothing(tmp_path, data):
    for name in ("a", "b"):
        train(*load_recipe(write_recipe(tmp_path / f"{name}.yaml", data, tmp_path / "runs", max_steps=1)))
    before = digest(tmp_path / "runs")
    code, _, err = run_cli("train", "--resume", str(tmp_path / "runs" / "a" / "last.safetensors"), "--set", "name=b")
    assert_one_line_error(code, err, "continues run 'a' in its own folder")
    code, _, err = run_cli("train", "--resume", str(tmp_path / "runs" / "a" / "last.safetensors"),
                           "--set", f"output={tmp_path / 'elsewhere'}")
    assert_one_line_error(code, err, "the recipe sets output=")
    assert digest(tmp_path / "runs") == before
    assert not (tmp_path / "elsewhere").exists()


def test_a_checkpoint_copied_into_another_run_folder_is_refused(tmp_path, data, monkeypatch):
    for name in ("a", "b"):  # two runs of the same recipe (same name and relative output) in two places
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        train(*load_recipe(write_recipe(tmp_path / name / "r.yaml", data, Path("runs"), max_steps=1)))
    a, b = tmp_path / "a" / "runs" / "r", tmp_path / "b" / "runs" / "r"
    for f in ("last.state.safetensors", "last.safetensors"):
        (b / f).write_bytes((a / f).read_bytes())
    before = digest(b)
    code, _, err = run_cli("train", "--resume", str(b / "last.safetensors"))
    assert_one_line_error(code, err, "the checkpoint belongs to run")
    assert digest(b) == before


def test_resume_from_another_directory_continues_in_the_checkpoints_folder(tmp_path, data, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    recipe = write_recipe(tmp_path / "a" / "r.yaml", data, Path("runs"), max_steps=2)  # relative output
    monkeypatch.chdir(tmp_path / "a")
    train(*load_recipe("r.yaml"))
    monkeypatch.chdir(tmp_path / "b")
    code, _, err = run_cli("train", "--resume", str(tmp_path / "a" / "runs" / "r" / "last.safetensors"),
                           "--set", "max_steps=null")
    assert code == 0, err
    summary = json.loads((tmp_path / "a" / "runs" / "r" / "summary.json").read_text())
    assert (summary["status"], summary["epochs"]) == ("complete", 2)
    assert not (tmp_path / "b" / "runs").exists()


def test_a_folder_in_use_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, data):
    path = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", max_steps=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from attnzoo.train.run_lock import RunLock; "
         f"RunLock(__import__('pathlib').Path({str(tmp_path / 'runs' / 'r')!r})).acquire(); "
         "print('locked', flush=True); time.sleep(600)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"is in use by process {holder.pid} on "):
            train(*load_recipe(path))
        assert not (tmp_path / "runs" / "r" / "summary.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert train(*load_recipe(path))["status"] == "stopped"  # the dead process's lock no longer counts


# (write point, which time it is reached): the final epoch's commit (the 2nd), best.safetensors in the 1st
# (the first epoch always improves on "no best yet"), and the 3rd, which adds the test scores at the end.
CRASH_POINTS = [
    *[(f"stage:{f}", 2) for f in ("last.state.safetensors", "last.safetensors", "metrics.csv", "summary.json")],
    ("stage:best.safetensors", 1), ("commit", 2),
    *[(f"apply:{f}", 2) for f in ("last.safetensors", "last.state.safetensors", "metrics.csv", "summary.json")],
    ("apply:best.safetensors", 1), ("applied", 2), ("stage:summary.json", 3), ("apply:last.safetensors", 3),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("reference")
    train(*load_recipe(write_recipe(root / "ref.yaml", data, root / "runs")))
    return root / "runs" / "ref"


def _assert_consistent(run: Path) -> None:
    """Weights, metrics, summary and state describe the same moment of the same run."""
    tensors, header = load_state(run)
    progress = header["progress"]
    summary = json.loads((run / "summary.json").read_text())
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert summary["epochs"] == progress["epoch"] == len(rows)
    assert summary["top1"] == pytest.approx(float(rows[-1]["val_top1"]), abs=1e-3)
    tested = "test" in progress["final"]  # the test split is scored once, after the last epoch
    assert summary["status"] == ("complete" if progress["epoch"] == 2 and tested else "stopped")
    assert (summary["test_top1"] is not None) == tested
    last = load_file(run / "last.safetensors")
    assert all(torch.equal(last[k], tensors[f"model.{k}"]) for k in last)
    with safe_open(run / "best.safetensors", framework="pt") as f:
        best = f.metadata()
    assert float(best["val_top1"]) == pytest.approx(summary["best_top1"], abs=1e-3)
    assert int(best["epoch"]) <= summary["epochs"]
    assert not (run / ".staging").exists() and not (run / ".commit").exists()


@pytest.mark.parametrize(("point", "nth"), CRASH_POINTS, ids=[f"{p}#{n}" for p, n in CRASH_POINTS])
def test_crash_at_each_write_point_leaves_a_consistent_folder_that_resumes_exactly(tmp_path, data, reference,
                                                                                     point, nth):
    path = write_recipe(tmp_path / "ref.yaml", data, tmp_path / "runs")
    died = _python("-m", "attnzoo", "train", str(path), env={"ATTNZOO_FAULT_AT": f"{point}#{nth}"})
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]  # the write point was reached
    run = tmp_path / "runs" / "ref"
    run_folder.settle(run)  # what a reader does first
    if (run / "last.state.safetensors").exists():
        _assert_consistent(run)
        summary = train(*load_recipe(path), resume=str(run / "last.safetensors"))
    else:  # died before the first commit: nothing was written, so the run simply starts again
        assert not any((run / f).exists() for f in run_folder.RESULT_FILES)
        summary = train(*load_recipe(path))
    assert summary["status"] == "complete"
    _assert_consistent(run)
    want, got = load_file(reference / "last.safetensors"), load_file(run / "last.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert load_file(reference / "best.safetensors").keys() == load_file(run / "best.safetensors").keys()


def test_sigint_saves_state_exits_with_one_line_and_resumes_exactly(tmp_path, data):
    reference = write_recipe(tmp_path / "ref.yaml", data, tmp_path / "ref", batch_size=16)  # 3 steps per epoch
    train(*load_recipe(reference))
    path = write_recipe(tmp_path / "ref.yaml", data, tmp_path / "runs", batch_size=16)
    stopped = _python(str(ROOT / "tests" / "train_helpers.py"), "sigint-at", "5", str(path))
    line = assert_one_line_error(stopped.returncode, stopped.stderr, "interrupted at epoch 2, step 2 (global step 5)")
    assert "--resume" in line
    run = tmp_path / "runs" / "ref"
    _, header = load_state(run)
    assert header["progress"]["global_step"] == 5
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"
    train(*load_recipe(path), resume=str(run / "last.safetensors"))
    want, got = load_file(tmp_path / "ref" / "ref" / "last.safetensors"), load_file(run / "last.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_a_full_disk_stops_with_one_line_and_keeps_the_previous_checkpoint(tmp_path, data, monkeypatch):
    path = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs")
    real = run_folder.write_metrics
    calls = []

    def fill_disk_on_second_epoch(target, rows):
        calls.append(len(rows))
        if len(rows) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(target, rows)

    monkeypatch.setattr(run_folder, "write_metrics", fill_disk_on_second_epoch)
    with pytest.raises(RunFolderError, match="the disk is full; its previous checkpoint is intact"):
        train(*load_recipe(path))
    assert calls == [1, 2]
    run = tmp_path / "runs" / "r"
    _assert_consistent(run)
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1
    monkeypatch.undo()
    assert train(*load_recipe(path), resume=str(run / "last.safetensors"))["status"] == "complete"


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun not installed beside this python")
def test_a_locked_folder_stops_every_torchrun_process_with_one_line(tmp_path, data):
    run = tmp_path / "runs" / "ddp"
    recipe = write_recipe(tmp_path / "ddp.yaml", data, tmp_path / "runs", max_steps=1)
    holder = RunLock(run).acquire()  # this process holds the folder
    try:
        done = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone", "--nproc_per_node", "2",
             "-m", "attnzoo", "train", str(recipe)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
            capture_output=True, text=True, timeout=240)  # a rank left waiting for its peer would hang here
    finally:
        holder.release()
    assert done.returncode != 0
    assert f"error: run folder {run} is in use by process {os.getpid()}" in done.stderr
    assert not re.search(r'File "[^"]*/attnzoo/', done.stderr)  # (torchrun prints its own launcher traceback)
    assert not any((run / f).exists() for f in run_folder.RESULT_FILES)
