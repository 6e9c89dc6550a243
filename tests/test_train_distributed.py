"""``torchrun`` with 2 CPU processes (gloo): both ranks finish with identical weights; only rank 0 writes."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from attnzoo.train.distributed import DistInfo, default_threads
from train_helpers import ROOT, make_tiny_fashion_mnist, write_recipe


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun not installed beside this python")
def test_two_process_torchrun_ends_with_identical_weights(tmp_path):
    """Also: no gradient-stride warning with channels_last (CBAM's 1x1 convs), and the recipe's unset
    ``threads`` gives each process its share of the cores, whatever OMP_NUM_THREADS says."""
    data = make_tiny_fashion_mnist(tmp_path / "data")
    recipe = write_recipe(tmp_path / "ddp.yaml", data, tmp_path / "runs", epochs=1, threads=None,
                          model={"name": "cnn3_cbam", "channels_last": True}, aug={"crop_padding": 2, "hflip": 0.5})
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "3"}
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone", "--nproc_per_node", "2",
         str(ROOT / "tests" / "train_helpers.py"), "dump-weights", str(recipe), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Grad strides do not match" not in done.stderr
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in range(2))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    run = tmp_path / "runs" / "ddp"
    assert (run / "metrics.csv").read_text().count("\n") == 2  # header + 1 epoch, written once
    hardware = json.loads((run / "summary.json").read_text())["hardware"]
    assert hardware.endswith(f"-core CPU, 2 processes, torch {torch.__version__}")
    threads = json.loads((run / "environment.json").read_text())["torch_threads"]
    assert threads == max(1, len(os.sched_getaffinity(0)) // 2)


def test_unset_threads_divide_the_cores_among_torchrun_processes(monkeypatch):
    cpu = DistInfo(device=torch.device("cpu"))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_threads(cpu) is None  # alone: torch's own choice (OMP_NUM_THREADS or every core)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_threads(cpu) == max(1, len(os.sched_getaffinity(0)) // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(10 * os.cpu_count()))
    assert default_threads(cpu) == 1
