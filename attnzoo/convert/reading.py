"""Reading third-party checkpoints: pickled PyTorch files, loaded without running any code they carry.

This is the one place attnzoo unpickles anything: ``torch.load(weights_only=True)`` refuses every object
but tensors and plain containers, and :func:`tensors_only` then refuses whatever is not a tensor where
weights are expected. Everything attnzoo writes is safetensors.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from attnzoo.errors import CheckpointError

DATA_PARALLEL_PREFIX = "module."
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _first_sentence(err: Exception) -> str:
    text = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict a ``torch.save`` file holds; :class:`CheckpointError` for a missing, corrupt or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"source checkpoint {path} does not exist; check the path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _UNSAFE_GLOBAL.search(str(err))
        reason = f"it needs {found.group(1)}" if found else _first_sentence(err)
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain containers, which attnzoo does not unpickle "
            f"({reason}); load it where you trust it and re-save torch.save(model.state_dict(), ...)"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure to parse an untrusted file means the same to the user
        reason = _first_sentence(err)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({reason}); it may be truncated: download it again"
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(checkpoint).__name__}, not a dict of weights; save a state_dict instead"
        )
    return dict(checkpoint)


def tensors_only(weights: Any, source: str) -> dict[str, torch.Tensor]:
    """``weights`` as a flat ``{name: tensor}`` dict; nested dicts join their keys with dots.

    Anything else (a number, a string, a list) where weights belong is refused with its key named, and so
    is a tensor holding NaN or infinity: converting it would publish broken weights.
    """
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, found a {type(weights).__name__}")
    flat: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in tensors_only(value, source).items()})
        elif isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{source}: tensor {key!r} holds NaN or infinity; the file is damaged")
            flat[str(key)] = value
        else:
            raise CheckpointError(
                f"{source}: entry {key!r} is of type {type(value).__name__}, not a tensor; only weights can be "
                "converted"
            )
    if not flat:
        raise CheckpointError(f"{source}: holds no tensors; is it a checkpoint of a model?")
    return flat


def strip_data_parallel(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds, when every key has it."""
    if all(key.startswith(DATA_PARALLEL_PREFIX) for key in weights):
        return {key[len(DATA_PARALLEL_PREFIX) :]: value for key, value in weights.items()}
    return weights


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, recorded on the card so anyone can tell which file was converted."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
