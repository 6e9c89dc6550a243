"""Run folders as `attnzoo train` writes them, made directly, for the leaderboard tests."""

import json

from attnzoo.models import build_model, model_config

TRACK = "recipes/fmnist/tracks/short"


def make_run(root, name, arch, seed, test_top1, *, ms_per_img=1.0, status="complete", recipe=None, epochs=2,
             old_protocol=False, recipe_cfg=None):
    """A run folder as training writes it; ``ms_per_img`` pre-writes the cached latency."""
    run = root / name
    run.mkdir(parents=True)
    summary = {
        "name": name, "model": model_config(build_model(arch, num_classes=10, in_chans=1)),
        "recipe": recipe or f"{TRACK}/{arch}.yaml", "seed": seed, "dataset": "fashion-mnist", "num_classes": 10,
        "img_size": 28, "epochs": epochs, "top5": 99.0, "train_time_s": 100.0, "params": 1000000,
        "hardware": "2-core CPU", "status": status,
    }
    if old_protocol:
        summary |= {"top1": test_top1, "best_top1": test_top1}
    else:
        summary |= {"splits": {"num_train": 8000}, "selection": "val", "top1": test_top1 + 1.0,
                    "best_top1": test_top1 + 1.5, "test_top1": test_top1, "best_test_top1": test_top1 + 0.25,
                    "best_epoch": epochs}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text("epoch,val_top1\n1,50.0\n2,60.0\n")
    (run / "recipe.yaml").write_text(json.dumps(recipe_cfg or {"model": {"name": arch}, "seed": seed}))
    if ms_per_img is not None:
        (run / "cost.json").write_text(json.dumps({"ms_per_img": ms_per_img, "hardware": "test CPU"}))
    return run
