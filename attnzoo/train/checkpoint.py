"""Training state on disk: one safetensors file of tensors plus a JSON header, replaced atomically.

``last.state.safetensors`` holds everything needed to continue a run exactly: the model weights (so the
state never disagrees with them), optimizer buffers, the EMA weights, and the RNG states, with the
non-tensor parts (step counters, optimizer hyper-parameters, scheduler, numpy/python RNG, metric history)
as JSON in the file's metadata. Nothing is unpickled on load. ``last.safetensors`` beside it holds the
weights alone (written by :func:`attnzoo.models.save_weights`) for evaluation and export.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from attnzoo.errors import CheckpointError

STATE_KEY = "attnzoo_train_state"
FORMAT = 1


def state_path_for(path: str | os.PathLike) -> Path:
    """The state file that goes with ``path`` (``last.safetensors`` -> ``last.state.safetensors``)."""
    path = Path(path)
    if path.name.endswith(".state.safetensors"):
        return path
    if path.is_dir():
        return path / "last.state.safetensors"
    return path.with_name(path.name.removesuffix(".safetensors") + ".state.safetensors")


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every global RNG: torch (and CUDA) as tensors, numpy and python as JSON-able values."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return tensors, {
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, buffers in sd["state"].items():
        for key, value in buffers.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: torch.nn.Module | None,
    extra: dict[str, Any],
) -> None:
    """Write the full training state to ``path`` atomically (temp file, then rename).

    ``extra`` is JSON-able progress (counters, scheduler and scaler state, history).
    """
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _optimizer_parts(optimizer)
    tensors.update(optim_tensors)
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    rng_tensors, rng_meta = rng_state()
    tensors.update(rng_tensors)
    header = {"format": FORMAT, "optimizer": optim_meta, "rng": rng_meta, **extra}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, tmp, metadata={STATE_KEY: json.dumps(header)})
    os.replace(tmp, path)


def _open_state(path: str | os.PathLike, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = state_path_for(path)
    if not path.is_file():
        raise CheckpointError(f"no training state at {path}; resume from a run folder's last.safetensors "
                              "(its last.state.safetensors must sit beside it)")
    try:
        with safe_open(path, framework="pt") as f:
            header = json.loads((f.metadata() or {})[STATE_KEY])
            loaded = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except (SafetensorError, OSError, KeyError, ValueError, RecursionError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"training state {path} is unreadable ({reason}); it may be truncated or not "
                              "written by attnzoo train") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"training state {path} has format {found!r}, expected {FORMAT}; it was not "
                              "written by this version of attnzoo train")
    return loaded, header


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a state file alone (cheap: no tensor is read), e.g. to check a resume target."""
    return _open_state(path, tensors=False)[1]


def load_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON header of a state file; :class:`CheckpointError` when missing or unreadable."""
    return _open_state(path, tensors=True)


def restore(
    tensors: dict[str, torch.Tensor],
    header: dict[str, Any],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: torch.nn.Module | None,
) -> None:
    """Load model, optimizer, EMA and RNG state from a :func:`load_state` result, strictly."""
    from attnzoo.models import load_state_dict_strict

    def section(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    load_state_dict_strict(model, section("model."), "the training state")
    optimizer.load_state_dict(_optimizer_state(tensors, header["optimizer"]))
    if ema is not None:
        ema_sd = section("ema.")
        if not ema_sd:
            raise CheckpointError("the training state has no EMA weights but the recipe enables ema; "
                                  "resume with ema.enabled=false or start a new run")
        load_state_dict_strict(ema, ema_sd, "the training state's EMA")
    set_rng_state(tensors, header["rng"])
