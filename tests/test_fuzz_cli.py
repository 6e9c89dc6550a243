"""Fuzzing the command line: bad options, ids, checkpoints and data files give exit status 2 and one
`error:` line without a traceback, and leave every earlier file as it was."""

import gzip
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from attnzoo.train import load_recipe, run_folder, train
from fuzz_helpers import assert_one_line_error, digest, run_cli
from train_helpers import make_tiny_fashion_mnist, write_idx, write_recipe

EVAL_COUNTS = [("--batch-size", "0"), ("--batch-size", "-4"), ("--runs", "0"), ("--runs", "-1"),
               ("--threads", "0"), ("--workers", "-1"), ("--img-size", "0"), ("--num-classes", "0")]


@pytest.mark.parametrize(("flag", "value"), EVAL_COUNTS)
def test_eval_counts_below_one_are_refused(flag, value):
    code, _, err = run_cli("eval", "cnn3", flag, value)
    assert_one_line_error(code, err, f"{flag} {value}: must be at least")


ONNX = ("export", "cnn3", "--onnx", "x.onnx")
OTHER_COUNTS = [
    ("bench", "resnet18", "--rounds", "0"), ("bench", "resnet18", "--iters", "-1"),
    ("bench", "resnet18", "--threads", "0"), ("bench", "resnet18", "--infer-batch", "0"),
    ("bench", "resnet18", "--train-size", "2"), ("bench", "resnet18", "--profile", "0"), ("demo", "--epochs", "0"),
    ("demo", "--max-steps", "0"), ("demo", "--img-size", "-1"), (*ONNX, "--tolerance", "nan"),
    (*ONNX, "--tolerance", "-1"), (*ONNX, "--img-size", "0"), (*ONNX, "--num-classes", "-1"),
    (*ONNX, "--in-chans", "0"),
]


@pytest.mark.parametrize("argv", OTHER_COUNTS, ids=[" ".join(a) for a in OTHER_COUNTS])
def test_other_commands_refuse_meaningless_counts_before_work(tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*argv)
    line = assert_one_line_error(code, err, ": must be at least")
    assert f"error: {argv[-2]} " in line
    assert list(tmp_path.iterdir()) == []


def test_onnx_path_that_is_a_folder_is_refused_and_leaves_no_temp_file(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    before = digest(tmp_path)
    code, _, err = run_cli("export", "cnn3", "--onnx", str(tmp_path))
    assert_one_line_error(code, err, "is a folder")
    assert digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


BAD_IDS = [
    ("eval", "hf-hub:../x"), ("eval", "hf-hub:org/na me"), ("eval", "hf-hub:org/name@a b"),
    ("export", "hf-hub:../x", "--onnx", "x.onnx"),
]


@pytest.mark.parametrize("argv", BAD_IDS, ids=[" ".join(a) for a in BAD_IDS])
def test_bad_hub_ids_on_the_command_line(argv):
    code, _, err = run_cli(*argv)
    assert_one_line_error(code, err, "")


@pytest.mark.parametrize(("repo", "revision", "match"), [
    ("../x", None, "is not a Hub model id"), ("org/na me", None, "is not a Hub model id"),
    ("org/name", "a b", "is not a branch"), ("org/name", "../main", "is not a branch"),
    ("org", None, "is not a Hub model id"),
])
def test_push_refuses_bad_repo_ids_and_revisions_before_anything(tmp_path, repo, revision, match):
    argv = ["push", str(tmp_path / "no-such-run"), "--repo", repo] + (["--revision", revision] if revision else [])
    code, _, err = run_cli(*argv)
    assert_one_line_error(code, err, match)


def test_train_without_recipe_or_resume(tmp_path):
    code, _, err = run_cli("train")
    assert_one_line_error(code, err, "give a recipe file")


@pytest.mark.parametrize(("content", "match"), [
    (None, "no training state"), (b"garbage", "unreadable"), (b"", "unreadable"),
])
def test_resume_from_a_missing_or_garbage_state(tmp_path, content, match):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text("model: {name: cnn3}\nname: r\noutput: runs\n")
    if content is not None:
        (run / "last.state.safetensors").write_bytes(content)
    before = digest(tmp_path)
    code, _, err = run_cli("train", "--resume", str(run / "last.safetensors"))
    assert_one_line_error(code, err, match)
    assert digest(tmp_path) == before


def test_resume_from_a_state_with_non_json_metadata(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text("model: {name: cnn3}\nname: r\noutput: runs\n")
    save_file({"x": torch.zeros(1)}, run / "last.state.safetensors", metadata={"attnzoo_train_state": "{nope"})
    before = digest(tmp_path)
    code, _, err = run_cli("train", "--resume", str(run / "last.safetensors"))
    assert_one_line_error(code, err, "unreadable")
    assert digest(tmp_path) == before


def _corrupt_labels(root):
    write_idx(root / "train-labels-idx1-ubyte.gz", np.full(64, 12, dtype=np.uint8))


def _truncate_images(root):
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])


def _not_gzip(root):
    path = root / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.decompress(path.read_bytes()))


def _other_size_test_images(root):
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.zeros((32, 32, 32), dtype=np.uint8))


@pytest.mark.parametrize(("damage", "match"), [
    (_corrupt_labels, "has label 12"), (_truncate_images, "not a readable gzip IDX file"),
    (_not_gzip, "not a readable gzip IDX file"), (_other_size_test_images, "shape (32, 32)"),
])
def test_damaged_data_files_stop_training_before_any_step(tmp_path, damage, match):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=64, test=32)
    damage(data)
    recipe = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", max_steps=1)
    before = digest(tmp_path)
    code, _, err = run_cli("train", str(recipe))
    assert_one_line_error(code, err, match)
    after = digest(tmp_path)
    assert all(after[k] == v for k, v in before.items())
    assert not any((tmp_path / "runs" / "r" / f).exists() for f in run_folder.RESULT_FILES)


def test_publishing_a_run_with_an_interrupted_commit_is_refused(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=64, test=32)
    train(*load_recipe(write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", epochs=1)))
    run = tmp_path / "runs" / "r"
    (run / ".commit").mkdir()
    (run / ".commit" / "summary.json").write_text(json.dumps({"name": "r"}))
    before = digest(run)
    code, _, err = run_cli("push", str(run), "--repo", "org/name", "--dry-run", str(tmp_path / "out"))
    assert_one_line_error(code, err, "a crash interrupted")
    assert digest(run) == before and not (tmp_path / "out").exists()
