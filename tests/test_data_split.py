"""The validation protocol: a fixed stratified val split held out of the training images, a fixed
training subset, and a test split evaluated only at the end of a run."""

import json

import pytest
import torch
from safetensors.torch import load_file

from attnzoo.data import load_fashion_mnist
from attnzoo.data.fashion_mnist import stratified_subset, validation_mask
from attnzoo.errors import CheckpointError, RecipeError
from attnzoo.train import load_recipe, train
from attnzoo.train.distributed import init_distributed
from attnzoo.train.trainer import Trainer
from train_helpers import make_tiny_fashion_mnist, write_recipe


def test_val_is_one_twelfth_of_each_class_fixed_and_disjoint_from_train(tmp_path):
    root = make_tiny_fashion_mnist(tmp_path, train=600, test=8)
    all_images, all_labels = load_fashion_mnist("trainval", root)
    val_images, val_labels = load_fashion_mnist("val", root)
    train_images, train_labels = load_fashion_mnist("train", root)
    assert len(val_labels) + len(train_labels) == len(all_labels) == 600
    mask = validation_mask(all_labels)
    assert torch.equal(val_images, all_images[mask]) and torch.equal(train_images, all_images[~mask])
    for c in range(10):  # stratified: each class contributes round(n_c / 12) images
        assert (val_labels == c).sum() == round((all_labels == c).sum().item() / 12)
    assert torch.equal(mask, validation_mask(all_labels.clone()))  # same indices every call


def test_full_size_split_is_500_per_class():
    labels = torch.arange(10).repeat_interleave(6000)[torch.randperm(60000, generator=torch.Generator().manual_seed(1))]
    val = labels[validation_mask(labels)]
    assert len(val) == 5000 and torch.equal(torch.bincount(val), torch.full((10,), 500))


def test_stratified_subset_depends_on_its_seed_only():
    labels = torch.arange(10).repeat(100)
    a, b = stratified_subset(labels, 0.2, 7), stratified_subset(labels, 0.2, 7)
    assert torch.equal(a, b) and len(a) == 200 and not torch.equal(a, stratified_subset(labels, 0.2, 8))
    assert torch.equal(torch.bincount(labels[a]), torch.full((10,), 20))


def _trainer(tmp_path, name, **fields):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=256, test=32)
    recipe, path = load_recipe(write_recipe(tmp_path / f"{name}.yaml", data, tmp_path / "runs", **fields))
    return Trainer(recipe, path, init_distributed("cpu"))


def test_train_subset_is_the_same_images_for_every_seed(tmp_path):
    first = _trainer(tmp_path, "a", data={"train_subset": 100}, seed=0).data.train
    second = _trainer(tmp_path, "b", data={"train_subset": 100}, seed=3).data.train
    assert first.num_samples == second.num_samples < 256
    assert torch.equal(torch.sort(first.labels).values, torch.sort(second.labels).values)


def test_summary_reports_val_selection_and_test_on_final_and_best(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=256, test=32)
    path = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", epochs=2, model={"name": "cnn3"})
    summary = train(*load_recipe(path))
    assert summary["selection"] == "val" and summary["splits"]["test"] == "test"
    assert summary["splits"]["num_test"] == 32 and summary["splits"]["num_val"] + summary["splits"]["num_train"] == 256
    metrics = (tmp_path / "runs" / "r" / "metrics.csv").read_text().splitlines()[1:]
    val = [float(line.split(",")[4]) for line in metrics]
    assert summary["best_epoch"] == 1 + val.index(max(val))
    assert 0 <= summary["test_top1"] <= 100 and 0 <= summary["best_test_top1"] <= 100
    saved = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert saved["test_top1"] == summary["test_top1"]
    assert load_file(tmp_path / "runs" / "r" / "best.safetensors")  # what best_test_top1 was measured on


@pytest.mark.parametrize("fields, match", [
    ({"data": {"test_split": "val"}}, "data.test_split: 'val' is also the train or val split"),
    ({"data": {"train_subset": 0}}, "data.train_subset: 0 must be >= 1"),
])
def test_recipe_refuses_test_split_used_for_selection_or_bad_subset(tmp_path, fields, match):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=32, test=8)
    with pytest.raises(RecipeError, match=match):
        load_recipe(write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", **fields))


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_follows_the_recipes_nesterov(tmp_path, nesterov):
    trainer = _trainer(tmp_path, f"n{nesterov}", optim={"name": "sgd", "nesterov": nesterov})
    assert trainer.optimizer.param_groups[0]["nesterov"] is nesterov


def test_resume_with_another_schedule_is_refused(tmp_path):
    """Each schedule-defining field, changed at resume, is named in the error (the run's files untouched)."""
    data = make_tiny_fashion_mnist(tmp_path / "data", train=128, test=8)
    path = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", epochs=1, model={"name": "cnn3"},
                        sched={"name": "cosine", "warmup_epochs": 0.0}, optim={"name": "sgd", "lr": 0.1})
    train(*load_recipe(path))
    last = tmp_path / "runs" / "r" / "last.safetensors"
    before = {f.name: f.read_bytes() for f in last.parent.iterdir() if f.is_file()}
    for override, message in [("epochs=3", r"epochs differs .*: 1, now 3\)"),
                              ("sched.warmup_epochs=0.5", r"sched\.warmup_epochs differs .*: 0\.0, now 0\.5\)"),
                              ("sched.name=step", r"sched\.name differs .*: 'cosine', now 'step'\)"),
                              ("optim.lr=0.05", r"optim\.lr differs .*: 0\.1, now 0\.05\)")]:
        recipe, resolved = load_recipe(path, [override])
        with pytest.raises(CheckpointError, match="recipe field " + message):
            train(recipe, resolved, resume=str(last))
    assert {f.name: f.read_bytes() for f in last.parent.iterdir() if f.is_file()} == before
