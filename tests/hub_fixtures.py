"""Fixtures and helpers shared by the hub tests: a local Hub, a client pointed at it, tiny trained runs.

Import the fixtures into a test module (``from hub_fixtures import hub, hub_server``). Every test gets a
fresh ``HF_HOME`` under ``tmp_path``, so the user's real ``~/.cache/huggingface`` is never read or written.
"""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import HfApi
from torch import nn

from attnzoo.models import save_weights
from attnzoo.train import load_recipe, train
from hub_server import HubServer, point_client_at

# A behaviour bound for Hub failures, not a benchmark: the client's retries alone took ~23 s per file.
FAST_S = 15.0
from train_helpers import make_tiny_fashion_mnist, write_recipe


@pytest.fixture(scope="module")
def hub_server():
    """One local Hub per test module (repos persist across the module's tests; use distinct repo ids)."""
    with HubServer() as server:
        yield server


@pytest.fixture
def hub(hub_server, tmp_path, monkeypatch):
    """The local Hub, with huggingface_hub and timm pointed at it and a fresh cache (``hub.hf_home``)."""
    hub_server.hf_home = tmp_path / "hf-home"
    point_client_at(monkeypatch, hub_server.url, hub_server.token, hub_server.hf_home)
    return hub_server


def train_steps(model: nn.Module, steps: int = 3, img_size: int = 28) -> nn.Module:
    """A few SGD steps on random images, so the weights (and BN statistics) differ from any init."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    in_chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    for _ in range(steps):
        x = torch.randn(8, in_chans, img_size, img_size)
        y = torch.randint(0, model.num_classes, (8,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def trained_run(root: Path, name: str = "tiny-cnn3_cbam") -> Path:
    """A real run folder: ``attnzoo.train`` on a tiny synthetic Fashion-MNIST, one epoch of cnn3_cbam."""
    data = make_tiny_fashion_mnist(root / "data")
    recipe, path = load_recipe(write_recipe(root / f"{name}.yaml", data, root / "runs", epochs=1))
    train(recipe, path)
    return root / "runs" / name


def make_run(root: Path, name: str, model: nn.Module, img_size: int = 28) -> Path:
    """A run folder as training writes it (run-folder contract) with chosen numbers and ``model``'s weights."""
    run = root / "runs" / name
    run.mkdir(parents=True)
    save_weights(model, run / "best.safetensors")
    save_weights(model, run / "last.safetensors")
    model_cfg = {"architecture": model.pretrained_cfg["architecture"], "num_classes": model.num_classes}
    summary = {
        "name": name, "model": model_cfg, "recipe": f"recipes/{name}.yaml", "seed": 0, "dataset": "fashion-mnist",
        "num_classes": model.num_classes, "img_size": img_size, "epochs": 2,
        "splits": {"train": "train", "val": "val", "test": "test", "num_train": 55000, "num_val": 5000,
                   "num_test": 10000},
        "selection": "val", "top1": 91.8, "top5": 99.9, "best_top1": 92.0, "test_top1": 91.23, "test_top5": 99.87,
        "best_epoch": 1, "best_test_top1": 91.5, "train_time_s": 754.0, "params": sum(p.numel() for p in model.parameters()),
        "hardware": "2-core CPU, torch 2.14.1", "status": "complete",
    }
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    recipe = {"model": {"name": model_cfg["architecture"], "small_input": True},
              "data": {"dataset": "fashion-mnist", "root": str(root / "datasets" / "fashion-mnist")},
              "optim": {"name": "sgd", "lr": 0.05}, "epochs": 2, "output": str(run)}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    (run / "environment.json").write_text(json.dumps({"cwd": str(root), "hostname": "private-host"}))
    return run


def assert_same_weights(expected: nn.Module, actual: nn.Module, skip: tuple[str, ...] = ()) -> None:
    """Bit-identical state dicts (same keys, same values), ignoring keys starting with ``skip``."""
    want = {k: v for k, v in expected.state_dict().items() if not k.startswith(skip)}
    got = {k: v for k, v in actual.state_dict().items() if not k.startswith(skip)}
    assert sorted(want) == sorted(got)
    different = [k for k in want if not torch.equal(want[k], got[k])]
    assert not different, f"weights differ: {different[:5]}"


def publish_files(repo: str, files: dict[str, bytes]) -> None:
    """Put arbitrary files in a repo (the local Hub accepts anything the real one would)."""
    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    for path, content in files.items():
        api.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id=repo)


def one_line(err: pytest.ExceptionInfo) -> str:
    """The error's message, asserted to be one line."""
    message = str(err.value)
    assert "\n" not in message
    return message


def closed_port_url() -> str:
    """An endpoint on 127.0.0.1 where nothing listens: an unreachable Hub."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def pickled(model: nn.Module) -> bytes:
    """``model``'s state dict as ``torch.save`` writes it (a pickle)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def fast_one_line_error(load, error: type[Exception], match: str) -> str:
    """Run ``load``; it must raise ``error`` matching ``match``, in one line, within :data:`FAST_S`."""
    start = time.perf_counter()
    with pytest.raises(error, match=match) as err:
        load()
    assert time.perf_counter() - start < FAST_S
    return one_line(err)
