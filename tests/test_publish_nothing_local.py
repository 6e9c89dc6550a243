"""Nothing local is published: a run trained from a recipe under a private relative path, on data under a
relative root, pushed to the loopback Hub; every file the push wrote is scanned for local paths (absolute
and relative), the user's home, user name and host name."""

import getpass
import os
import re
import socket
from pathlib import Path

from attnzoo.train import load_recipe, train
from fuzz_helpers import run_cli
from hub_fixtures import hub, hub_server  # noqa: F401
from train_helpers import make_tiny_fashion_mnist, write_recipe


def _header_or_text(path: str, data: bytes) -> bytes:
    """A text file whole; a safetensors file's JSON header (its names and metadata), not tensor bytes."""
    return data[8: 8 + int.from_bytes(data[:8], "little")] if path.endswith(".safetensors") else data


def test_push_of_a_run_with_relative_paths_publishes_none_of_them(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_tiny_fashion_mnist(Path("private-data") / "fmnist-copy", train=64, test=32)
    recipe_dir = Path("experiments") / "secret-project"
    recipe_dir.mkdir(parents=True)
    recipe = write_recipe(recipe_dir / "leaky.yaml", Path("private-data") / "fmnist-copy", Path("my-runs"), epochs=1)
    train(*load_recipe(recipe))
    code, out, err = run_cli("push", str(Path("my-runs") / "leaky"), "--repo", "lab/no-local", "--weights", "last")
    assert code == 0, err

    uploaded = {path: data for repo, _, path, data in hub.uploaded_files() if repo == "lab/no-local"}
    assert {"model.safetensors", "config.json", "README.md"} <= set(uploaded)
    card = uploaded["README.md"].decode()
    assert "## Resolved recipe" in card and "root: <local path>" in card and "output: <local path>" in card
    private = ["private-data", "fmnist-copy", "secret-project", "experiments/", "my-runs", str(tmp_path),
               str(Path.home()), os.getcwd()]
    if len(socket.gethostname()) >= 4:  # a shorter host name matches ordinary words
        private.append(socket.gethostname())
    user = getpass.getuser()
    for path, data in uploaded.items():
        text = _header_or_text(path, data).decode("utf-8", "replace")
        leaks = [p for p in private if p in text]
        if user not in ("root", "user") and len(user) >= 3 and re.search(rf"\b{re.escape(user)}\b", text):
            leaks.append(user)
        assert not leaks, f"{path} publishes {leaks}"
