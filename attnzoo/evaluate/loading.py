"""Turning what a user names on the command line into a model ready to evaluate."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from attnzoo import hub
from attnzoo.errors import CheckpointError
from attnzoo.models import build_model, check_model_name, load_state_dict_strict, model_from_config, read_weights
from attnzoo.models.io import CONFIG_KEY


def _arch(name: str) -> str:
    return name.split(".", 1)[0]


def load_eval_model(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> nn.Module:
    """Build model ``name`` and load its weights, in eval mode.

    ``checkpoint`` is a safetensors file (a run's ``best.safetensors``, or any state dict of ``name``) or
    ``hf-hub:org/repo``; without it a name with a pretrained tag loads timm's weights and any other name is
    evaluated untrained (cost only). An attnzoo checkpoint carries its model config (small-input stem,
    in_chans, head), so the model is rebuilt from that and must be the architecture named. ``num_classes``
    resets the head when it differs from the weights' one.
    """
    if name.startswith("hf-hub:"):
        model = hub.load_model(name, num_classes=num_classes, in_chans=in_chans)
    elif checkpoint is not None and str(checkpoint).startswith("hf-hub:"):
        check_model_name(name)
        model = hub.load_model(str(checkpoint), num_classes=num_classes, in_chans=in_chans)
        _check_architecture(model.pretrained_cfg.get("architecture", ""), name, str(checkpoint))
    elif checkpoint is None and "." in name:
        model = build_model(name, pretrained=True, in_chans=in_chans)
    elif checkpoint is not None:
        check_model_name(name)
        model = _from_file(name, Path(checkpoint), num_classes=num_classes, in_chans=in_chans)
    else:
        model = build_model(name, num_classes=num_classes, in_chans=in_chans)
    if num_classes is not None and model.num_classes != num_classes:
        model.reset_classifier(num_classes)
    return model.eval()


def _check_architecture(found: str, name: str, source: str) -> None:
    if found and _arch(found) != _arch(name):
        raise CheckpointError(
            f"{source} holds a {found} model, which does not fit {name}; evaluate it as "
            f"`attnzoo eval {found} --checkpoint {source}`"
        )


def _from_file(name: str, path: Path, *, num_classes: int | None, in_chans: int | None) -> nn.Module:
    state_dict, metadata = read_weights(path)
    if CONFIG_KEY in metadata:
        config = json.loads(metadata[CONFIG_KEY])
        _check_architecture(config["architecture"], name, str(path))
        model = model_from_config(config)
    else:
        model = build_model(name, num_classes=num_classes, in_chans=in_chans)
    load_state_dict_strict(model, state_dict, str(path))
    return model
