"""``convert_checkpoint``: a third-party checkpoint -> an attnzoo Hub folder (safetensors, config, card)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from attnzoo.convert.card import Provenance, render_convert_card
from attnzoo.convert.reading import read_checkpoint, sha256_of
from attnzoo.convert.registry import Source, get_source, list_sources
from attnzoo.errors import CheckpointError, ConvertError
from attnzoo.hub.export import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, save_pretrained
from attnzoo.models.io import load_state_dict_strict

OUTPUT_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
_BATCH_COUNTER = "num_batches_tracked"


def convert_checkpoint(
    source: str, architecture: str, src_file: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False
) -> Path:
    """Convert ``src_file``, a checkpoint of ``source``, into attnzoo's ``architecture``; write it to ``out_dir``.

    ``out_dir`` then holds ``model.safetensors``, ``config.json`` (timm's Hub format) and ``README.md`` (a
    card with the file's provenance). ``timm.create_model(f"local-dir:{out_dir}", pretrained=True)`` loads it,
    and so does ``timm.create_model(architecture, pretrained=True, pretrained_cfg_overlay=dict(file=...))``
    where the name's default pretrained config describes ImageNet-shaped weights; both are checked before
    anything is written, and the card lists those that passed. An existing non-empty ``out_dir`` is refused
    unless ``force``, which replaces those three files and nothing else.
    """
    src = get_source(source)
    if architecture not in src.architectures:
        raise ConvertError(
            f"source {src.name} provides {', '.join(src.architectures)}, not {architecture!r}; choose one of "
            "those with --arch"
        )
    src_path, out = Path(src_file), Path(out_dir)
    _check_output(out, src_path, force)
    model, model_args = _converted_model(src, architecture, src_path)
    model.pretrained_cfg = {**model.pretrained_cfg, **src.data_config, "license": src.license}
    provenance = Provenance(file_name=src_path.name, sha256=sha256_of(src_path))
    name = f"{architecture}.{src.tag}"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_pretrained(
            model, staging, repo_id=name, license=src.license,
            card=lambda config: render_convert_card(
                src, architecture, provenance, config, name, _loading_calls(architecture, staging, model, model_args)
            ),
        )
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _loading_calls(architecture: str, folder: Path, model: nn.Module, model_args: dict[str, Any]) -> list[str]:
    """The timm calls that load ``folder`` back with ``model``'s logits, as code for the card.

    ``local-dir:`` must work (else the written files are wrong, and nothing is published); the call by
    attnzoo's name (with the model arguments the source implies, e.g. ``stages``) is listed only if that
    name's default pretrained config fits these weights.
    """
    weights = folder / WEIGHTS_NAME
    n = model.num_classes
    classes = "" if n == 1000 else f", num_classes={n}"  # a head of another size must be asked for
    extra = {k: v for k, v in model_args.items() if k not in ("num_classes", "in_chans")}
    extra_code = "".join(f", {k}={v!r}" for k, v in extra.items())
    calls = {
        'timm.create_model(f"local-dir:{folder}", pretrained=True)': (f"local-dir:{folder}", {}),
        f'timm.create_model("{architecture}", pretrained=True{classes}{extra_code},\n'
        f'                          pretrained_cfg_overlay=dict(file=f"{{folder}}/model.safetensors"{classes}))': (
            architecture,
            dict(num_classes=n, **extra, pretrained_cfg_overlay=dict(file=str(weights), num_classes=n))),
    }
    size = tuple(model.pretrained_cfg["input_size"])
    x = torch.randn(1, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
    working = []
    for call, (name, kwargs) in calls.items():
        try:
            with torch.no_grad():
                same = torch.allclose(timm.create_model(name, pretrained=True, **kwargs).eval()(x), expected,
                                      rtol=1e-5, atol=1e-5)
        except Exception:  # noqa: BLE001 - a call that fails in any way is not offered on the card
            same = False
        if same:
            working.append(call)
    if not working or not working[0].startswith('timm.create_model(f"local-dir:'):
        raise ConvertError(
            f"the converted {architecture} does not load back from {folder} with the same logits; nothing "
            "was written: please report this with the source file's name"
        )
    return working


def _check_output(out: Path, src_path: Path, force: bool) -> None:
    """Refuse an output that would lose data: a file, a non-empty folder without ``force``, or the source."""
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out} is a file; give a folder to write {', '.join(OUTPUT_FILES)} into")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConvertError(
            f"--out {out} exists and is not empty; choose a new folder, or pass --force to replace "
            f"{', '.join(OUTPUT_FILES)} in it (other files are kept)"
        )
    if src_path.exists() and src_path.resolve() in {(out / f).resolve() for f in OUTPUT_FILES}:
        raise ConvertError(f"the source file {src_path} would be overwritten by the output; choose another --out")


def _converted_model(src: Source, architecture: str, src_path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """``(architecture holding the source file's weights, its model arguments)``, loaded strictly;
    mismatches name their keys."""
    weights = src.weights_of(read_checkpoint(src_path), str(src_path))
    model_args = src.model_kwargs(weights, str(src_path))
    model = timm.create_model(architecture, **model_args)
    state, unknown = src.to_attnzoo(weights, model)
    if unknown:
        raise CheckpointError(
            f"{src_path}: {len(unknown)} tensors are not {src.name}'s (e.g. {', '.join(unknown[:3])})"
            + _unknown_hint(src, unknown)
        )
    # BN batch counters only steer training momentum; files from PyTorch < 0.4.1 have none
    own = model.state_dict()
    state.update({k: v for k, v in own.items() if k.endswith(_BATCH_COUNTER) and k not in state})
    try:
        load_state_dict_strict(model, state, f"{src.name} checkpoint {src_path}")
    except CheckpointError as err:
        guess = src.guess_architecture(weights)
        hint = f"; the file looks like {guess}: use --arch {guess}" if guess and guess != architecture else ""
        raise CheckpointError(f"{err}{hint}") from None
    return model.eval(), model_args


def _unknown_hint(src: Source, unknown: list[str]) -> str:
    if any(key.startswith("bam") for key in unknown):
        return "; it holds BAM modules, which no attnzoo architecture has (see docs/convert.md)"
    return f"; is it a checkpoint of {src.repo_url}? Known sources: {', '.join(list_sources())}"


def _publish(staging: Path, out: Path) -> None:
    """Move the staged files into ``out``: the whole folder if new, else file by file (each replace atomic)."""
    if not out.exists():
        os.replace(staging, out)
        return
    for name in OUTPUT_FILES:
        os.replace(staging / name, out / name)

