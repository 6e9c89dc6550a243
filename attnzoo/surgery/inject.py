"""``inject``: put an attention type into every supported block of an already-built model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from attnzoo.attention import (
    accepted_kwargs,
    check_kwargs,
    create_attention,
    get_attention_class,
    init_identity,
)
from attnzoo.errors import SurgeryError, UnsupportedArchitectureError
from attnzoo.surgery.record import record_surgery, surgery_record
from attnzoo.surgery.registry import find_hook, supported_block_types
from attnzoo.surgery.stem import adapt_small_input


def model_stages(model: nn.Module) -> list[nn.Module]:
    """The model's stages in order, found by timm's naming conventions.

    ResNets name them ``layer1``..``layerN``; the EfficientNet family keeps them in ``blocks``; most other
    timm models (and attnzoo's cnn3) in ``stages``, which timm's ``features_only`` wrappers flatten to
    ``stages_0``, ``stages_1``, ... and timm's other feature wrappers keep whole, as their only child
    (``feature_cls="getter"``: ``model``, ``"hook"``: ``body``). Stage numbers in the API count from 1.
    """
    children = dict(model.named_children())
    for prefix, start in (("layer", 1), ("blocks_", 0), ("stages_", 0)):
        numbered = []
        while f"{prefix}{start + len(numbered)}" in children:
            numbered.append(children[f"{prefix}{start + len(numbered)}"])
        if numbered:
            return numbered
    for name in ("blocks", "stages"):
        if isinstance(children.get(name), nn.Sequential):
            return list(children[name])
    if len(children) == 1:
        return model_stages(next(iter(children.values())))
    return []


def _resolve_stages(attn: str, stages: Sequence[int] | None, blocks: list[list[nn.Module]]) -> list[int]:
    num_stages = len(blocks)
    if stages is None:
        with_blocks = [i for i, stage_blocks in enumerate(blocks, 1) if stage_blocks]
        if getattr(get_attention_class(attn), "default_stages", "all") == "last":
            return with_blocks[-1:]
        return with_blocks
    if isinstance(stages, (str, bytes)) or not stages:
        raise SurgeryError(f"stages={stages!r}: give at least one stage number in 1..{num_stages}, or None for "
                           "the default stages")
    bad = [s for s in stages if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= num_stages]
    if bad:
        raise SurgeryError(f"stage {bad[0]!r} is out of range; this model has stages 1..{num_stages}")
    return sorted(set(stages))


def _check_not_injected(model: nn.Module) -> None:
    done = [op["attn"] for op in surgery_record(model) if op["op"] == "attention"]
    if done:
        raise SurgeryError(
            f"this model already has {done[0]!r} attention; inject into a fresh model instead of twice"
        )


def inject(
    model: nn.Module,
    attn: str,
    *,
    stages: Sequence[int] | None = None,
    preserve: bool = False,
    **attn_kwargs: Any,
) -> nn.Module:
    """Insert attention ``attn`` into every supported block of the chosen stages, in place.

    Args:
        model: a built timm ResNet-family or EfficientNet-family model (pretrained or not), or any model
            whose blocks have a registered hook.
        attn: a registered attention name (:func:`attnzoo.list_attentions`).
        stages: 1-based stage numbers; default every stage with supported blocks (only the last for
            ``mhsa``).
        preserve: initialise so the model computes exactly its original function; fine-tuning a
            pretrained backbone then starts from its accuracy. After training the modules are the plain
            paper form: no extra parameters or blend.
        attn_kwargs: constructor arguments of the attention module (e.g. ``rd_ratio``).

    Returns:
        ``model``, with the surgery recorded on it for saving and rebuilding.
    """
    check_kwargs(attn, attn_kwargs)
    _check_not_injected(model)
    all_stages = model_stages(model)
    blocks = [
        [m for m in stage.modules() if find_hook(m) is not None] for stage in all_stages
    ]
    if not any(blocks):
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no block that attnzoo can modify; supported block types: "
            f"{', '.join(supported_block_types())} (add one with attnzoo.register_surgery)"
        )
    chosen = _resolve_stages(attn, stages, blocks)
    targets = [block for stage in chosen for block in blocks[stage - 1]]
    if preserve:
        _check_preservable(attn, targets)
    accepted = set(accepted_kwargs(attn))
    for block in targets:
        hook = find_hook(block)
        defaults = {k: v for k, v in hook.default_kwargs(block, attn_kwargs).items() if k in accepted}
        module = _like(create_attention(attn, hook.channels(block), **{**defaults, **attn_kwargs}), block)
        if preserve:
            hook.compensate(block, init_identity(module))
        if hasattr(type(module), "gate_in_place"):
            module.gate_in_place = hook.slot_input_is_temporary
        setattr(block, hook.slot, module)
        if hook.gated_tail is not None and hook.gated_tail.__base__ is type(block) and hasattr(module, "fusable_gates"):
            block.__class__ = hook.gated_tail
    record_surgery(
        model,
        {"op": "attention", "attn": attn, "stages": chosen, "preserve": preserve, "kwargs": dict(attn_kwargs)},
    )
    return model


def _like(module: nn.Module, block: nn.Module) -> nn.Module:
    """``module`` on the block's device, dtype and memory format, and in its train/eval mode, so that an
    eval-mode model stays eval-mode (no batch statistics) and a half-precision one stays half."""
    tensors = [t for t in (*block.parameters(), *block.buffers()) if t.is_floating_point()]
    if tensors:
        module.to(device=tensors[0].device, dtype=tensors[0].dtype)
        if any(t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
               for t in tensors):
            module.to(memory_format=torch.channels_last)
    return module.train(block.training)


def _check_preservable(attn: str, blocks: list[nn.Module]) -> None:
    if not hasattr(get_attention_class(attn), "init_identity"):
        raise SurgeryError(
            f"preserve=True: attention {attn!r} has no parameters to start as the identity; "
            "use preserve=False or another attention"
        )
    for block in blocks:
        existing = getattr(block, find_hook(block).slot, None)
        if existing is not None and not isinstance(existing, nn.Identity):
            raise SurgeryError(
                f"preserve=True: {type(block).__name__} already has {type(existing).__name__}, which the new "
                "attention replaces, so the original function cannot be kept; use preserve=False"
            )


def apply_surgery(model: nn.Module, ops: Sequence[dict[str, Any]]) -> nn.Module:
    """Replay recorded surgery ``ops`` (from :func:`surgery_record`) on a freshly built model."""
    for op in ops:
        if op["op"] == "attention":
            inject(model, op["attn"], stages=op["stages"], preserve=op.get("preserve", False), **op["kwargs"])
        elif op["op"] == "small_input":
            adapt_small_input(model, stride=op.get("stride", 1))
        else:
            raise SurgeryError(f"unknown surgery operation {op['op']!r}; known: attention, small_input")
    return model
