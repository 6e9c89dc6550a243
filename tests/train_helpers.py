"""Helpers for the training tests: a tiny synthetic Fashion-MNIST in IDX format, recipe writing, and a
worker that ``torchrun`` or a killable subprocess runs.

Run as a script: ``python tests/train_helpers.py dump-weights RECIPE OUT_DIR`` trains and writes every
rank's final weights; ``python tests/train_helpers.py kill-at STEP RECIPE`` trains and SIGKILLs itself
after global step STEP; ``python tests/train_helpers.py sigint-at STEP RECIPE`` runs ``attnzoo train
RECIPE`` and sends itself SIGINT (Ctrl-C) while global step STEP runs.
"""

from __future__ import annotations

import gzip
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as a gzipped IDX file."""
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_tiny_fashion_mnist(root: Path, train: int = 128, test: int = 64) -> Path:
    """Learnable fake Fashion-MNIST: class c is a bright horizontal band at row 2c plus noise."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4: 2 * c + 7] = 230
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", labels)
    return root


def write_recipe(path: Path, data_root: Path, output: Path, **fields: Any) -> Path:
    """A small cnn3 recipe on the tiny data; ``fields`` are top-level keys merged over the defaults."""
    recipe: dict[str, Any] = {
        "defaults": str(ROOT / "recipes" / "fashion_mnist" / "_base.yaml"),
        "model": {"name": "cnn3_cbam"},
        "data": {"root": str(data_root)},
        "output": str(output),
        "epochs": 2,
        "batch_size": 32,
        "threads": 1,
        "checkpoint_every": 0,
    }
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    path.write_text(yaml.safe_dump(recipe))
    return path


def _dump_weights(recipe_path: str, out_dir: str) -> None:
    import torch
    from safetensors.torch import save_file

    from attnzoo.train import load_recipe
    from attnzoo.train.distributed import init_distributed, shutdown
    from attnzoo.train.trainer import Trainer

    recipe, path = load_recipe(recipe_path)
    info = init_distributed("cpu")
    trainer = Trainer(recipe, path, info)
    trainer.fit()
    state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(state, Path(out_dir) / f"rank{info.rank}.safetensors")
    if info.distributed:
        torch.distributed.barrier()
    shutdown(info)


def _kill_at(step: int, recipe_path: str) -> None:
    from attnzoo.train import load_recipe, train
    from attnzoo.train.trainer import Trainer

    original = Trainer._train_step

    def step_then_maybe_die(self: Trainer, x: Any, y: Any) -> None:
        original(self, x, y)
        if self.progress.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)

    Trainer._train_step = step_then_maybe_die
    recipe, path = load_recipe(recipe_path)
    train(recipe, path)


def _sigint_at(step: int, recipe_path: str) -> int:
    from attnzoo_cli import main
    from attnzoo.train.trainer import Trainer

    original = Trainer._train_step

    def interrupt_during_step(self: Trainer, x: Any, y: Any) -> None:
        if self.progress.global_step == step - 1:
            os.kill(os.getpid(), signal.SIGINT)
        original(self, x, y)

    Trainer._train_step = interrupt_during_step
    return main(["train", recipe_path])


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "dump-weights":
        _dump_weights(*rest)
    elif command == "kill-at":
        _kill_at(int(rest[0]), rest[1])
    elif command == "sigint-at":
        sys.exit(_sigint_at(int(rest[0]), rest[1]))
    else:
        sys.exit(f"unknown command {command}")
