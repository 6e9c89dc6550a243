"""attnzoo's names in timm's registry: ``<backbone>_<attention>`` and the cnn3 family.

Names come from the tables below, not from hand-written functions: each (backbone, attention) pair gets a
generated entrypoint registered with timm's ``register_model``, and a pretrained-config table
(``default_cfgs``) that timm reads when it registers the name. Weights produced by the shipped
Fashion-MNIST recipes are tagged ``fmnist`` and live on the Hub under ``$ATTNZOO_HUB_ORG`` (default
``attnzoo``), e.g. ``attnzoo/resnet18_cbam.fmnist``.
"""

from __future__ import annotations

import os
from typing import Any

import timm
from timm.models import generate_default_cfgs, load_pretrained, register_model, resolve_pretrained_cfg
from torch import nn

from attnzoo.errors import UnknownModelError
from attnzoo.models.cnn3 import Cnn3, build_cnn3
from attnzoo.surgery import apply_surgery

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

# Backbones the Fashion-MNIST recipes train, and the model arguments those weights were trained with.
FMNIST_MODEL_ARGS: dict[str, dict[str, Any]] = {
    "resnet18": dict(in_chans=1, num_classes=10),  # padded to 32 px, standard stem
    "mobilenetv2_100": dict(in_chans=1, num_classes=10, small_input=True),
    "cnn3": dict(in_chans=1, num_classes=10),
}
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
# (first conv, classifier) per backbone, so timm can adapt in_chans and reset the head of loaded weights.
FMNIST_LAYERS = {
    "resnet18": ("conv1", "fc"),
    "mobilenetv2_100": ("conv_stem", "classifier"),
    "cnn3": ("stages.0.conv", "fc"),
}
BASE_ATTR = "attnzoo_base"


def hub_org() -> str:
    """The Hub organisation holding attnzoo's weights (``$ATTNZOO_HUB_ORG``, default ``attnzoo``)."""
    return os.environ.get("ATTNZOO_HUB_ORG", "attnzoo")


def _fmnist_cfg(name: str, base: str) -> dict[str, Any]:
    first_conv, classifier = FMNIST_LAYERS[base]
    return dict(
        hf_hub_id=f"{hub_org()}/{name}.fmnist",
        num_classes=10,
        input_size=(1, 32, 32) if base == "resnet18" else (1, 28, 28),
        mean=FMNIST_MEAN,
        std=FMNIST_STD,
        crop_pct=1.0,
        interpolation="bilinear",
        first_conv=first_conv,
        classifier=classifier,
        license="apache-2.0",
    )


def _default_cfgs(names: dict[str, str]) -> dict[str, Any]:
    """An ``fmnist`` config for names the recipes train (plain/SE/CBAM), an untagged one for the rest."""
    cfgs: dict[str, dict[str, Any]] = {}
    for name, base in names.items():
        if base in FMNIST_MODEL_ARGS and name in (base, f"{base}_se", f"{base}_cbam"):
            cfgs[f"{name}.fmnist"] = _fmnist_cfg(name, base)
        else:
            cfgs[name] = dict(num_classes=1000, input_size=(3, 224, 224), license="apache-2.0")
    return generate_default_cfgs(cfgs)


INJECTED = {f"{base}_{attn}": base for base in BACKBONES for attn in ATTENTIONS}
INJECTED.update({f"cnn3_{attn}": "cnn3" for attn in CNN3_ATTENTIONS})
default_cfgs = _default_cfgs({"cnn3": "cnn3", **INJECTED})


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
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg, pretrained_cfg_overlay)
    if pretrained and not cfg.has_weights:
        raise UnknownModelError(
            f"{variant} has no pretrained attnzoo weights (tags with weights: "
            f"{', '.join(timm.list_pretrained(variant + '.*')) or 'none'}); to start from the backbone's "
            f"weights use attnzoo.build_model({base!r}, pretrained=True, attention={attn!r}, preserve=True)"
        )
    # Fashion-MNIST weights fix the input channels and stem they were trained with.
    weights_args = FMNIST_MODEL_ARGS.get(base, {}) if pretrained and cfg.tag == "fmnist" else {}
    model_args = {**weights_args, **kwargs}
    if small_input is not None:
        model_args["small_input"] = small_input
    ops = [{"op": "small_input", "stride": stem_stride}] if model_args.pop("small_input", False) else []
    ops.append({"op": "attention", "attn": attn, "stages": stages, "preserve": False, "kwargs": attn_kwargs or {}})
    model = apply_surgery(timm.create_model(base, **model_args), ops)
    object.__setattr__(model, BASE_ATTR, base)
    model.pretrained_cfg = model.default_cfg = cfg.to_dict()
    if pretrained:
        load_pretrained(
            model,
            model.pretrained_cfg,
            num_classes=model_args.get("num_classes", 1000),
            in_chans=model_args.get("in_chans", 3),
            cache_dir=cache_dir,
            # a features_only wrapper has no classifier to load
            strict=not model_args.get("features_only", False),
        )
    return model


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
