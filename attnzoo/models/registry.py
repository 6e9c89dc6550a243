"""attnzoo's names in timm's registry: ``<backbone>_<attention>`` and the cnn3 family.

Names come from the tables below, not from hand-written functions: each (backbone, attention) pair gets a
generated entrypoint registered with timm's ``register_model``, and its pretrained cfgs
(:mod:`attnzoo.models.cfgs`) sit in ``default_cfgs``, which timm reads when it registers the name.
"""

from __future__ import annotations

from typing import Any

import timm
from timm.models import generate_default_cfgs, register_model, resolve_pretrained_cfg
from torch import nn

from attnzoo.attention import get_attention_class
from attnzoo.errors import UnknownModelError
from attnzoo.models.cfgs import FMNIST_MODEL_ARGS, PRESERVE_SUFFIX, hub_org, is_preserving, name_cfgs
from attnzoo.models.cnn3 import Cnn3, build_cnn3
from attnzoo.models.pretrained import load_pretrained_weights
from attnzoo.surgery import apply_surgery

__all__ = ["ATTENTIONS", "BACKBONES", "BASE_ATTR", "FMNIST_MODEL_ARGS", "INJECTED", "default_cfgs", "hub_org"]

BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet50d",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "mobilenetv1_100",
    "mobilenetv2_100",
    "mobilenetv2_140",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "efficientnet_b0",
)
ATTENTIONS = ("se", "cbam", "cbam_channel", "cbam_spatial", "eca", "coord", "simam", "mhsa")
CNN3_ATTENTIONS = ("se", "cbam")
BASE_ATTR = "attnzoo_base"

INJECTED = {f"{base}_{attn}": base for base in BACKBONES for attn in ATTENTIONS}
INJECTED.update({f"cnn3_{attn}": "cnn3" for attn in CNN3_ATTENTIONS})
default_cfgs = generate_default_cfgs(
    {
        **name_cfgs("cnn3", "cnn3", None),
        **{k: v for name, base in INJECTED.items() for k, v in name_cfgs(name, base, name[len(base) + 1 :]).items()},
    }
)


def _create_injected(
    variant: str,
    base: str,
    attn: str,
    pretrained: bool = False,
    *,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    stages: list[int] | None = None,
    attn_kwargs: dict[str, Any] | None = None,
    small_input: bool | None = None,
    stem_stride: int = 1,
    cache_dir: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build ``base`` with timm, apply the surgery, and load the tag's weights the timm way.

    A function-preserving tag's weights are the backbone's: they load before the attention is injected with
    ``preserve=True``; every other tag's weights are the whole model's and load after.
    """
    try:
        cfg = resolve_pretrained_cfg(variant, pretrained_cfg, pretrained_cfg_overlay)
    except RuntimeError:  # timm's "Invalid pretrained tag", for a tag given in the name
        if not isinstance(pretrained_cfg, str):
            raise
        tags = ", ".join(name.split(".", 1)[1] for name in timm.list_pretrained(f"{variant}.*")) or "none"
        raise UnknownModelError(
            f"{variant} has no pretrained tag {pretrained_cfg!r}; its tags are {tags} (docs/weights.md lists them)"
        ) from None
    if pretrained and not cfg.has_weights:
        raise UnknownModelError(_no_weights(variant, base, attn))
    # As timm's builder does, the cfg sets the classes and input channels unless the caller does; the fmnist
    # tag also fixes the stem its weights were trained with.
    cfg_args = dict(num_classes=cfg.num_classes, in_chans=cfg.input_size[0])
    tag_args = FMNIST_MODEL_ARGS.get(base, {}) if cfg.tag == "fmnist" else {}
    model_args = {**cfg_args, **tag_args, **kwargs}
    if small_input is not None:
        model_args["small_input"] = small_input
    preserving = is_preserving(cfg.tag)
    ops = [{"op": "small_input", "stride": stem_stride}] if model_args.pop("small_input", False) else []
    ops.append({"op": "attention", "attn": attn, "stages": stages, "preserve": preserving, "kwargs": attn_kwargs or {}})
    model = timm.create_model(base, **model_args)
    if pretrained and preserving:  # the backbone's weights, before the attention that keeps its function
        _load(model, cfg.to_dict(), model_args, cache_dir)
    apply_surgery(model, ops)
    if pretrained and not preserving:
        _load(model, cfg.to_dict(), model_args, cache_dir)
    object.__setattr__(model, BASE_ATTR, base)
    model.pretrained_cfg = model.default_cfg = cfg.to_dict()
    return model


def _load(model: nn.Module, cfg: dict[str, Any], model_args: dict[str, Any], cache_dir: str | None) -> None:
    load_pretrained_weights(
        model, cfg, num_classes=model_args["num_classes"], in_chans=model_args["in_chans"], cache_dir=cache_dir,
        strict=not model_args.get("features_only", False),  # a features_only wrapper has no classifier to load
    )


def _no_weights(variant: str, base: str, attn: str) -> str:
    tags = timm.list_pretrained(f"{variant.partition('.')[0]}.*")
    if not tags:
        preserve = ", preserve=True" if hasattr(get_attention_class(attn), "init_identity") else ""
        return (f"{variant} has no pretrained weights in any tag; to start from the backbone's weights use "
                f"attnzoo.build_model({base!r}, pretrained=True, attention={attn!r}{preserve})")
    return (f"{variant} has no pretrained weights; tags with weights: {', '.join(tags)} (*{PRESERVE_SUFFIX}: "
            "the backbone's weights, the attention untrained)")


def _entrypoint(name: str, base: str, attn: str):
    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _create_injected(name, base, attn, pretrained, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"timm {base} with {attn} attention injected by attnzoo surgery."
    return create


@register_model
def cnn3(pretrained: bool = False, **kwargs: Any) -> Cnn3:
    """Three conv-BN-ReLU-maxpool blocks (32/64/128), FC 512, dropout 0.5."""
    return build_cnn3("cnn3", pretrained=pretrained, **kwargs)


for _name, _base in INJECTED.items():
    register_model(_entrypoint(_name, _base, _name[len(_base) + 1 :]))
