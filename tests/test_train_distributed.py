"""``torchrun`` with 2 CPU processes (gloo): both ranks finish with identical weights; only rank 0 writes."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import ROOT, make_tiny_fashion_mnist, write_recipe


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun not installed beside this python")
def test_two_process_torchrun_ends_with_identical_weights(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data")
    recipe = write_recipe(tmp_path / "ddp.yaml", data, tmp_path / "runs", epochs=1,
                          aug={"crop_padding": 2, "hflip": 0.5})
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone", "--nproc_per_node", "2",
         str(ROOT / "tests" / "train_helpers.py"), "dump-weights", str(recipe), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in range(2))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    run = tmp_path / "runs" / "ddp"
    assert (run / "metrics.csv").read_text().count("\n") == 2  # header + 1 epoch, written once
    hardware = json.loads((run / "summary.json").read_text())["hardware"]
    assert hardware.endswith(f"-core CPU, 2 processes, torch {torch.__version__}")
