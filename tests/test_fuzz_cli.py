"""Fuzzing the command line: bad options, ids, checkpoints and data files give exit status 2 and one
`error:` line without a traceback, and leave every earlier file as it was."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from attnzoo.train import load_recipe, run_folder, train
from fuzz_helpers import assert_one_line_error, digest, run_cli
from leaderboard_helpers import make_run
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One complete tiny cnn3_cbam run (module-wide: the tests below only read it)."""
    root = tmp_path_factory.mktemp("finished")
    data = make_tiny_fashion_mnist(root / "data", train=64, test=32)
    train(*load_recipe(write_recipe(root / "r.yaml", data, root / "runs", epochs=1)))
    return root / "runs" / "r"


TOO_LARGE = [
    ("eval", "cnn3", "--img-size", "100000"), ("export", "cnn3", "--onnx", "x.onnx", "--img-size", "100000"),
    ("demo", "--no-train", "--img-size", "100000"), ("bench", "resnet18", "--infer-size", "100000"),
    ("bench", "resnet18", "--train-size", "5000"), ("viz", "cnn3_cbam", "--img-size", "4097"),
    ("viz", "cnn3_cbam", "--images", "100000000"), ("eval", "cnn3", "--threads", "100000"),
    ("eval", "cnn3", "--workers", "1000"), ("bench", "resnet18_se", "--threads", "100000"),
]


@pytest.mark.parametrize("argv", TOO_LARGE, ids=[" ".join(a) for a in TOO_LARGE])
def test_sizes_that_would_exhaust_memory_or_time_are_refused_before_work(tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*argv)
    line = assert_one_line_error(code, err, ": must be at most")
    assert f"error: {argv[-2]} {argv[-1]}" in line
    assert list(tmp_path.iterdir()) == []


def test_viz_refuses_an_empty_layer_name(tmp_path):
    code, _, err = run_cli("viz", "cnn3_cbam", "--layers", "layer1,", "--out", str(tmp_path / "v"))
    assert_one_line_error(code, err, "--layers 'layer1,' has an empty name")
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("command", [("viz", "cnn3_cbam", "--images", "1", "--out"),
                                     ("leaderboard", "RUNS", "--out"),
                                     ("push", "RUN", "--repo", "org/name", "--dry-run")])
@pytest.mark.parametrize(("target", "match"), [("file", "is a file"), ("run", "is a training run's folder")])
def test_an_output_folder_that_is_a_file_or_a_run_folder_is_refused(finished_run, tmp_path, command, target, match):
    other = tmp_path / "other"  # a second run folder, so that `finished_run` itself is never a target
    other.mkdir()
    (other / "run.json").write_text("{}")
    out = {"file": finished_run / "recipe.yaml", "run": other}[target]
    argv = [str(finished_run.parent) if a == "RUNS" else str(finished_run) if a == "RUN" else a for a in command]
    before = digest(finished_run.parent.parent), digest(tmp_path)
    code, _, err = run_cli(*argv, str(out))
    assert_one_line_error(code, err, match)
    assert (digest(finished_run.parent.parent), digest(tmp_path)) == before


def test_push_dry_run_refuses_a_folder_of_other_files_and_rewrites_its_own(finished_run, tmp_path):
    (tmp_path / "README.md").write_text("my project's readme")
    (tmp_path / "notes.txt").write_text("mine")
    before = digest(tmp_path)
    code, _, err = run_cli("push", str(finished_run), "--repo", "org/name", "--dry-run", str(tmp_path))
    assert_one_line_error(code, err, "already holds notes.txt")
    assert digest(tmp_path) == before
    out = tmp_path / "hub"
    for _ in range(2):  # a second dry run into the first one's folder replaces its files
        code, _, err = run_cli("push", str(finished_run), "--repo", "org/name", "--dry-run", str(out))
        assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]


@pytest.mark.parametrize("output", ["FILE", "FILE/sub"])
def test_a_run_output_that_cannot_be_a_folder_is_one_line_and_creates_nothing(tmp_path, output):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=64, test=32)
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("x")
    recipe = write_recipe(tmp_path / "r.yaml", data, output.replace("FILE", str(blocker)), max_steps=1)
    before = digest(tmp_path)
    code, _, err = run_cli("train", str(recipe))
    assert_one_line_error(code, err, "cannot create run folder")
    assert digest(tmp_path) == before


def test_a_run_that_fails_to_start_leaves_no_folder_behind(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=64, test=32)
    recipe = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", max_steps=1,
                          model={"name": "cnn3_cbam", "init": str(tmp_path / "r.yaml")})
    code, _, err = run_cli("train", str(recipe))
    assert_one_line_error(code, err, "r.yaml")
    assert list((tmp_path / "runs").iterdir()) == []


def test_resume_from_a_file_that_is_no_checkpoint_names_the_missing_state(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: cnn3}\n")
    code, _, err = run_cli("train", "--resume", str(recipe))
    assert_one_line_error(code, err, "no training state at")


def test_a_checkpoint_that_is_a_folder_is_named_as_such(finished_run):
    code, _, err = run_cli("eval", "cnn3_cbam", "--checkpoint", str(finished_run))
    assert_one_line_error(code, err, "is a folder; give a weights file")


def test_export_with_another_models_checkpoint_names_the_right_model(finished_run, tmp_path):
    code, _, err = run_cli("export", "resnet18", "--checkpoint", str(finished_run / "last.safetensors"),
                           "--onnx", str(tmp_path / "x.onnx"))
    assert_one_line_error(code, err, "name the model cnn3_cbam")
    assert list(tmp_path.iterdir()) == []


def _set(key, value):
    return lambda summary: summary.__setitem__(key, value)


def _malformed_surgery(summary):
    summary["model"]["surgery"] = [{"op": "attention"}]


DAMAGED_SUMMARIES = [
    ("seed text", _set("seed", "abc"), "seed is 'abc'"), ("seed float", _set("seed", 1.5), "seed is 1.5"),
    ("img_size text", _set("img_size", "big"), "img_size is 'big'"),
    ("img_size huge", _set("img_size", 10**9), "img_size is 1000000000"),
    ("epochs null", _set("epochs", None), "epochs is None"), ("model text", _set("model", "cnn3"), "model is str"),
    ("surgery malformed", _malformed_surgery, "malformed"), ("test_top1 nan", _set("test_top1", float("nan")), "nan"),
    ("test_top1 inf", _set("test_top1", float("inf")), "inf"), ("test_top1 null", _set("test_top1", None), "None"),
    ("params text", _set("params", "many"), "many"),
]


@pytest.mark.parametrize(("damage", "match"), [c[1:] for c in DAMAGED_SUMMARIES], ids=[c[0] for c in DAMAGED_SUMMARIES])
def test_leaderboard_leaves_out_a_damaged_summary_and_ranks_the_rest(tmp_path, damage, match):
    runs = tmp_path / "runs"
    make_run(runs, "cnn3_s0", "cnn3", 0, 90.0)
    bad = make_run(runs, "cnn3_s1", "cnn3", 1, 91.0)
    summary = json.loads((bad / "summary.json").read_text())
    damage(summary)
    (bad / "summary.json").write_text(json.dumps(summary))
    before = digest(runs)
    code, _, err = run_cli("leaderboard", str(runs), "--out", str(tmp_path / "lb"))
    assert code == 0, err
    board = (tmp_path / "lb" / "LEADERBOARD.md").read_text()
    left_out = next(line for line in board.splitlines() if line.startswith("Left out (unreadable)"))
    assert "cnn3_s1 (" in left_out and match in left_out
    assert "| cnn3 | cnn3 | 1 | 90.00 |" in board
    assert digest(runs) == before


def test_leaderboard_skips_commit_folders_and_holds_back_a_run_whose_commit_a_crash_interrupted(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "cnn3_s0", "cnn3", 0, 90.0)
    crashed = make_run(runs, "cnn3_s1", "cnn3", 1, 91.0)
    (crashed / ".commit").mkdir()
    (crashed / ".commit" / "summary.json").write_text((crashed / "summary.json").read_text())
    before = digest(runs)
    code, _, err = run_cli("leaderboard", str(runs), "--out", str(tmp_path / "lb"))
    assert code == 0, err
    board = (tmp_path / "lb" / "LEADERBOARD.md").read_text()
    assert "Left out (not complete): cnn3_s1 (a crash interrupted its last commit)." in board
    assert ".commit" not in board and "| cnn3 | cnn3 | 1 | 90.00 |" in board
    assert digest(runs) == before


@pytest.mark.parametrize("cache", ["{oops", json.dumps({"ms_per_img": "fast"}), json.dumps({"ms_per_img": -1}),
                                   json.dumps([1])])
def test_a_damaged_latency_cache_is_measured_again(tmp_path, cache):
    runs = tmp_path / "runs"
    run = make_run(runs, "cnn3_s0", "cnn3", 0, 90.0)
    (run / "cost.json").write_text(cache)
    code, _, err = run_cli("leaderboard", str(runs), "--out", str(tmp_path / "lb"))
    assert code == 0, err
    ms = json.loads((run / "cost.json").read_text())["ms_per_img"]
    assert ms > 0 and f"| {ms:.3f} |" in (tmp_path / "lb" / "LEADERBOARD.md").read_text()


@pytest.mark.parametrize(("env", "match"), [
    ({"RANK": "abc"}, "RANK='abc'"), ({"RANK": "3"}, "RANK='3'"), ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0'"),
    ({"WORLD_SIZE": "-2"}, "WORLD_SIZE='-2'"), ({"LOCAL_RANK": "x"}, "LOCAL_RANK='x'"),
    ({"WORLD_SIZE": "2"}, "RANK (unset)"), ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR (unset)"),
])
def test_torchrun_variables_that_describe_no_process_are_one_line(tmp_path, monkeypatch, env, match):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=64, test=32)
    recipe = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", max_steps=1)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = run_cli("train", str(recipe))
    assert_one_line_error(code, err, f"environment variable {match} does not describe a torchrun process")
    assert not (tmp_path / "runs").exists()


def test_a_rank_left_in_the_environment_does_not_silence_errors(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, _, err = run_cli("eval", "resnet18_cbma")
    assert_one_line_error(code, err, "did you mean resnet18_cbam")


def test_the_card_of_an_unfinished_run_shows_no_missing_value_as_none(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=64, test=32)
    train(*load_recipe(write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", max_steps=1)))
    run = tmp_path / "runs" / "r"
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"
    code, _, err = run_cli("push", str(run), "--repo", "org/name", "--dry-run", str(tmp_path / "hub"))
    assert code == 0, err
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "| Selection | best epoch chosen on the val split" in card and "None" not in card
    assert "| Run status | stopped |" in card


OUTPUT_FILES = [
    (("eval", "cnn3", "--runs", "1", "--json"), "summary.json", "inside a training run's folder"),
    (("eval", "cnn3", "--runs", "1", "--csv"), "metrics.csv", "inside a training run's folder"),
    (("export", "cnn3", "--onnx"), "best.safetensors", "must end in .onnx"),
    (("export", "cnn3", "--onnx"), "cnn3.onnx", "inside a training run's folder"),
    (("bench", "cnn3_se", "--modes", "eager", "--rounds", "1", "--log"), "metrics.csv",
     "inside a training run's folder"),
]


@pytest.mark.parametrize(("argv", "name", "match"), OUTPUT_FILES, ids=[f"{a[0]} {a[-1]} {n}" for a, n, _ in OUTPUT_FILES])
def test_output_files_never_land_in_a_run_folder(finished_run, argv, name, match):
    before = digest(finished_run)
    code, _, err = run_cli(*argv, str(finished_run / name))
    assert_one_line_error(code, err, match)
    assert digest(finished_run) == before


@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_eval_output_that_is_a_folder_is_refused_before_evaluating(tmp_path, option):
    code, out, err = run_cli("eval", "cnn3", "--runs", "1", option, str(tmp_path))
    assert_one_line_error(code, err, f"{option} {tmp_path} is a folder")
    assert out == "" and list(tmp_path.iterdir()) == []


def test_eval_output_in_a_new_folder_is_written(tmp_path):
    path = tmp_path / "new" / "rows.json"
    code, _, err = run_cli("eval", "cnn3", "--runs", "1", "--json", str(path))
    assert code == 0, err
    assert json.loads(path.read_text())[0]["model"] == "cnn3"


def test_a_run_that_selects_on_the_test_set_is_published_and_ranked_as_such(tmp_path):
    data = make_tiny_fashion_mnist(tmp_path / "data", train=64, test=32)
    recipe = write_recipe(tmp_path / "r.yaml", data, tmp_path / "runs", epochs=1,
                          data={"root": str(data), "val_split": "test", "test_split": None})
    train(*load_recipe(recipe))
    run = tmp_path / "runs" / "r"
    assert json.loads((run / "summary.json").read_text())["selection"] == "test"
    code, _, err = run_cli("push", str(run), "--repo", "org/name", "--dry-run", str(tmp_path / "hub"))
    assert code == 0, err
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "old protocol: the best epoch was chosen on the test split" in card and "test never used" not in card
    code, _, err = run_cli("leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"))
    assert code == 0, err
    assert "(old protocol: selected and reported on test)" in (tmp_path / "lb" / "LEADERBOARD.md").read_text()


def test_viz_refuses_inputs_too_large_to_hold_before_preparing_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNZOO_FASHION_MNIST", str(make_tiny_fashion_mnist(tmp_path / "data", train=10, test=300)))
    code, _, err = run_cli("viz", "cnn3_cbam", "--img-size", "4096", "--images", "1", "--out", str(tmp_path / "v"))
    assert_one_line_error(code, err, "300 test images at 4096 px take 18.8 GiB at once")
    assert not (tmp_path / "v").exists()


def test_bench_of_a_fixed_size_model_at_another_size_is_one_line_and_runs_at_its_own(capsys):
    code, _, err = run_cli("bench", "cnn3_se", "--modes", "eager", "--rounds", "1", "--iters", "1")
    assert_one_line_error(code, err, "cannot run on 1x224x224 input")
    code, out, err = run_cli("bench", "cnn3_se", "--modes", "eager", "--rounds", "1", "--iters", "1",
                             "--threads", "1", "--infer-size", "28")
    assert code == 0, err
    assert "batch 8 at 28x28" in out and "cnn3_se" in out


def test_resume_from_another_directory_of_a_run_with_a_relative_data_root_is_refused(tmp_path, monkeypatch):
    for folder in ("a", "b"):  # each holds its own `data`: resumed from b, the run would read b's
        make_tiny_fashion_mnist(tmp_path / folder / "data", train=64, test=32)
    monkeypatch.chdir(tmp_path / "a")
    train(*load_recipe(write_recipe(tmp_path / "a" / "r.yaml", Path("data"), Path("runs"), max_steps=1)))
    run = tmp_path / "a" / "runs" / "r"
    before = digest(run)
    monkeypatch.chdir(tmp_path / "b")
    code, _, err = run_cli("train", "--resume", str(run / "last.safetensors"))
    assert_one_line_error(code, err, f"data.root 'data' is relative to the directory the run started in; resume "
                                     f"from there (cd {tmp_path / 'a'})")
    assert digest(run) == before
    monkeypatch.chdir(tmp_path / "a")
    code, _, err = run_cli("train", "--resume", str(run / "last.safetensors"))
    assert code == 0, err
