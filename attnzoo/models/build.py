"""Building models by name, and describing a built model so it can be rebuilt."""

from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import nn

from attnzoo.errors import UnknownModelError
from attnzoo.models.config_check import check_config, check_sizes
from attnzoo.models.registry import BASE_ATTR
from attnzoo.surgery import adapt_small_input, apply_surgery, inject, surgery_record


def check_model_name(name: str) -> None:
    """Raise :class:`UnknownModelError` with close matches unless timm knows ``name`` (tags allowed)."""
    if name.startswith(("hf-hub:", "local-dir:")):
        return
    arch = name.split(".", 1)[0]
    if arch not in timm.list_models():
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see `attnzoo list` or timm.list_models()"
        raise UnknownModelError(f"unknown model {name!r}; {hint}")


def build_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained: bool = False,
    attention: str | None = None,
    stages: list[int] | None = None,
    preserve: bool = False,
    attn_kwargs: dict[str, Any] | None = None,
    small_input: bool = False,
    stem_stride: int = 1,
    **timm_kwargs: Any,
) -> nn.Module:
    """Create ``name`` with timm, then apply the requested surgery (:func:`apply_build_surgery`).

    ``name`` is any timm or attnzoo name, with a pretrained tag if wanted. An ``hf-hub:`` name goes to
    timm's own Hub loader here; :func:`attnzoo.build_model` reads it with attnzoo's (any recorded
    surgery, safetensors only), since models sit below the hub package.
    """
    check_model_name(name)
    check_sizes(num_classes, in_chans)
    kwargs = {k: v for k, v in dict(num_classes=num_classes, in_chans=in_chans).items() if v is not None}
    model = timm.create_model(name, pretrained=pretrained, **kwargs, **timm_kwargs)
    return apply_build_surgery(model, attention=attention, stages=stages, preserve=preserve,
                               attn_kwargs=attn_kwargs, small_input=small_input, stem_stride=stem_stride)


def apply_build_surgery(
    model: nn.Module,
    *,
    attention: str | None = None,
    stages: list[int] | None = None,
    preserve: bool = False,
    attn_kwargs: dict[str, Any] | None = None,
    small_input: bool = False,
    stem_stride: int = 1,
) -> nn.Module:
    """The surgery :func:`build_model` applies to a created model, for loaders that create it otherwise.

    ``small_input`` swaps the stem for 28-64 px images (:func:`attnzoo.surgery.adapt_small_input`, with
    ``stem_stride``). With ``pretrained=True, attention=..., preserve=True`` a backbone's weights are kept
    and the attention starts as the identity, so fine-tuning begins from the backbone's accuracy.
    """
    if small_input:
        adapt_small_input(model, stride=stem_stride)
    if attention:
        inject(model, attention, stages=stages, preserve=preserve, **(attn_kwargs or {}))
    return model


def _in_chans(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def model_config(model: nn.Module) -> dict[str, Any]:
    """A JSON-able description from which :func:`model_from_config` rebuilds ``model`` (untrained).

    ``architecture`` is the name the model was created under (e.g. ``resnet18_cbam``); ``base`` the timm
    model that the recorded ``surgery`` operations turn into it.
    """
    architecture = model.pretrained_cfg["architecture"]
    return {
        "architecture": architecture,
        "base": getattr(model, BASE_ATTR, architecture),
        "num_classes": model.num_classes,
        "in_chans": _in_chans(model),
        "surgery": surgery_record(model),
    }


def model_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model described by :func:`model_config` (weights freshly initialised); the description is
    checked first, as it may come from an untrusted file."""
    check_config(config)
    check_model_name(config["base"])
    model = timm.create_model(config["base"], num_classes=config["num_classes"], in_chans=config["in_chans"])
    apply_surgery(model, config["surgery"])
    if config["architecture"] != config["base"]:
        object.__setattr__(model, BASE_ATTR, config["base"])
        model.pretrained_cfg = {**model.pretrained_cfg, "architecture": config["architecture"]}
    return model
