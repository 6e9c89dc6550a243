"""Model weights on disk: safetensors files that carry the model's config, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from attnzoo.errors import CheckpointError
from attnzoo.models.build import model_config, model_from_config

CONFIG_KEY = "attnzoo_config"


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``model``'s state dict to ``path`` (temp file + rename, so a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, tmp, metadata={CONFIG_KEY: json.dumps(model_config(model)), **(metadata or {})})
    os.replace(tmp, path)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; :class:`CheckpointError` if missing or corrupt."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give a weights file, e.g. {path / 'best.safetensors'}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or the run folder")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(path), metadata
    except (SafetensorError, OSError, ValueError) as err:
        if _is_pytorch_pickle(path):
            raise CheckpointError(
                f"checkpoint {path} is a PyTorch pickle (torch.save), not safetensors; attnzoo loads safetensors "
                "only: convert it with attnzoo convert (docs/convert.md), or re-save it with "
                "safetensors.torch.save_file"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({err}); it may be truncated: "
            "re-download or re-export it"
        ) from None


def _is_pytorch_pickle(path: Path) -> bool:
    """Whether ``path`` starts as ``torch.save`` files do: a zip archive, or a bare pickle (PROTO opcode,
    protocol 2-5, then an opcode; a safetensors file starts with its header's length, whose third byte is 0)."""
    with path.open("rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or (len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[2] != 0)


def mismatch_summary(own: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Counts and a first example of mis-shaped, missing and unexpected keys; empty when ``state_dict`` fits."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    parts = []
    if mismatched:
        k = mismatched[0]
        parts.append(
            f"{len(mismatched)} shape mismatches (e.g. {k}: file {tuple(state_dict[k].shape)}, "
            f"model {tuple(own[k].shape)})"
        )
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    return parts


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load with ``strict=True``, turning missing, unexpected and mis-shaped keys into one-line errors."""
    parts = mismatch_summary(model.state_dict(), state_dict)
    if parts:
        raise CheckpointError(
            f"weights in {source} do not fit the model: {'; '.join(parts)}; check the model name, "
            "num_classes and in_chans match the checkpoint"
        )
    model.load_state_dict(state_dict, strict=True)


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a safetensors file into ``model`` strictly."""
    state_dict, _ = read_weights(path)
    load_state_dict_strict(model, state_dict, str(path))


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model a file written by :func:`save_weights` describes and load its weights."""
    state_dict, metadata = read_weights(path)
    if CONFIG_KEY not in metadata:
        raise CheckpointError(
            f"{path} has no attnzoo model config in its metadata; build the model yourself and use load_weights"
        )
    try:
        config = json.loads(metadata[CONFIG_KEY])
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path}: its {CONFIG_KEY} metadata is not valid JSON; the file is damaged or was "
                              "not written by attnzoo") from None
    model = model_from_config(config)
    load_state_dict_strict(model, state_dict, str(path))
    return model
