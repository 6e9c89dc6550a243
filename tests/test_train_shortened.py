"""Shortened runs: a one-epoch run is not all warm-up, and `--resume` after `--set max_steps=N` goes on."""

import json

import torch

from attnzoo.train import load_recipe
from attnzoo.train.trainer import _create_scheduler
from attnzoo_cli import main
from train_helpers import make_tiny_fashion_mnist, write_recipe


def lrs(tmp_path, epochs: int, steps_per_epoch: int = 100) -> list[float]:
    data = make_tiny_fashion_mnist(tmp_path / "data")
    path = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", epochs=epochs,
                        sched={"name": "cosine", "warmup_epochs": 1, "warmup_lr": 0.01}, optim={"lr": 0.1})
    recipe, _ = load_recipe(path)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.optim.lr)
    scheduler = _create_scheduler(recipe, optimizer, steps_per_epoch)
    out = []
    for step in range(1, epochs * steps_per_epoch + 1):
        scheduler.step_update(num_updates=step)
        out.append(optimizer.param_groups[0]["lr"])
    return out


def test_one_epoch_run_warms_up_for_a_fifth_then_decays(tmp_path):
    lr = lrs(tmp_path, epochs=1)
    peak = max(range(len(lr)), key=lr.__getitem__)
    assert 15 <= peak <= 25  # warmup_epochs=1 capped at 0.2 of the run
    assert lr[-1] < 0.5 * lr[peak]


def test_long_run_keeps_the_recipes_warm_up(tmp_path):
    lr = lrs(tmp_path, epochs=10)
    peak = max(range(len(lr)), key=lr.__getitem__)
    assert 90 <= peak < 100  # one warm-up epoch of 100 steps, as the recipe says (a tenth of the run)


def test_resume_after_max_steps_runs_to_the_end_of_the_schedule(tmp_path, capsys):
    data = make_tiny_fashion_mnist(tmp_path / "data")  # 128 images, batch 32: 4 steps per epoch
    path = write_recipe(tmp_path / "short.yaml", data, tmp_path / "runs", epochs=2)
    run = tmp_path / "runs" / "short"
    assert main(["train", str(path), "--set", "max_steps=3"]) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"
    stopped = capsys.readouterr().out.strip().splitlines()[-1]
    assert stopped.startswith("short: stopped after ") and "None" not in stopped
    assert stopped.endswith(f"; go on with attnzoo train --resume {run / 'last.safetensors'}")
    assert main(["train", "--resume", str(run / "last.safetensors")]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["epochs"]) == ("complete", 2)
    done = capsys.readouterr().out.strip().splitlines()[-1]
    assert done.startswith(f"short: complete after 2 epochs, val top-1 {summary['top1']:.2f} "
                           f"(best {summary['best_top1']:.2f}), test top-1 {summary['test_top1']:.2f}, ")
