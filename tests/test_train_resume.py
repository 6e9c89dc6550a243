"""Checkpoints: a run SIGKILLed mid-epoch and resumed ends with the uninterrupted run's exact weights;
a NaN loss stops the run and keeps the last good checkpoint."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attnzoo.train import NonFiniteLossError, load_recipe, train
from attnzoo.train.checkpoint import load_state
from train_helpers import ROOT, make_tiny_fashion_mnist, write_recipe

# Dropout (cnn3), EMA, mixup, random erasing and crop/flip all draw random numbers: resume must restore them.
# All 128 tiny training images train (no val hold-out), so that an epoch is 4 steps of 32.
RANDOM_EVERYTHING = dict(ema={"enabled": True, "decay": 0.9}, mixup={"mixup_alpha": 0.2},
                         aug={"crop_padding": 2, "hflip": 0.5, "re_prob": 0.5}, checkpoint_every=3,
                         data={"train_split": "trainval", "val_split": "test", "test_split": None})


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data")  # 128 train images, batch 32: 4 steps/epoch
    reference = write_recipe(tmp_path / "reference.yaml", data, tmp_path / "runs", **RANDOM_EVERYTHING)
    killed = write_recipe(tmp_path / "killed.yaml", data, tmp_path / "runs", **RANDOM_EVERYTHING)

    train(*load_recipe(reference))

    # Checkpoints land at steps 3, 4 (epoch end) and 6; the kill after step 7 loses step 7.
    died = _python(str(ROOT / "tests" / "train_helpers.py"), "kill-at", "7", str(killed))
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    _, header = load_state(tmp_path / "runs" / "killed" / "last.safetensors")
    assert (header["progress"]["epoch"], header["progress"]["step_in_epoch"]) == (1, 2)

    resumed = _python("-m", "attnzoo", "train", "--resume", str(tmp_path / "runs" / "killed" / "last.safetensors"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    want = load_file(tmp_path / "runs" / "reference" / "last.safetensors")
    got = load_file(tmp_path / "runs" / "killed" / "last.safetensors")
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert json.loads((tmp_path / "runs" / "killed" / "summary.json").read_text())["recipe"].endswith("killed.yaml")
    def metrics(run: str) -> list[list[str]]:  # every column but the wall-clock one
        lines = (tmp_path / "runs" / run / "metrics.csv").read_text().splitlines()
        return [line.split(",")[:-1] for line in lines]

    assert metrics("killed") == metrics("reference")
    assert len(metrics("killed")) == 3  # header + one row per epoch, none duplicated by the resume


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data")
    path = write_recipe(tmp_path / "diverge.yaml", data, tmp_path / "runs", checkpoint_every=1,
                        optim={"lr": 1.0e+30}, sched={"name": "none"})
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf) at epoch 1, step \d+ .*last good checkpoint "
                                                 r".*last\.safetensors \(global step \d+\)"):
        train(*load_recipe(path))
    run = tmp_path / "runs" / "diverge"
    weights = load_file(run / "last.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    summary = (run / "summary.json").read_text()
    assert '"status": "stopped"' in summary


def test_resume_refuses_a_changed_recipe(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data")
    path = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", max_steps=2)
    train(*load_recipe(path))
    recipe, resolved = load_recipe(path, ["optim.lr=0.5", "max_steps=null"])
    with pytest.raises(Exception, match="recipe field optim.lr differs"):
        train(recipe, resolved, resume=str(tmp_path / "runs" / "r" / "last.safetensors"))


def test_fresh_run_refuses_to_overwrite_a_run_folder(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data")
    path = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", max_steps=1)
    summary = train(*load_recipe(path))
    assert summary["status"] == "stopped" and not math.isnan(summary["train_time_s"])
    with pytest.raises(Exception, match="already holds a run; continue it with --resume"):
        train(*load_recipe(path))


def test_init_starts_from_saved_weights_with_a_new_head(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data")
    first = write_recipe(tmp_path / "first.yaml", data, tmp_path / "runs", max_steps=1)
    train(*load_recipe(first))
    weights = tmp_path / "runs" / "first" / "last.safetensors"
    tuned = write_recipe(tmp_path / "tuned.yaml", data, tmp_path / "runs", max_steps=1,
                         model={"name": "cnn3_cbam", "init": str(weights), "num_classes": 12},
                         optim={"lr": 0.0, "weight_decay": 0.0}, sched={"name": "none"})
    train(*load_recipe(tuned))
    before, after = load_file(weights), load_file(tmp_path / "runs" / "tuned" / "last.safetensors")
    body = [k for k in before if after[k].shape == before[k].shape and "running" not in k and "num_batches" not in k]
    assert len(body) > 10 and all(torch.equal(before[k], after[k]) for k in body)  # lr 0: body unchanged
    assert before["fc.weight"].shape == (10, 512) and after["fc.weight"].shape == (12, 512)  # new head
