"""Capturing what a model computes: feature maps of named layers and the gates of its attention modules.

Forward hooks record the tensors while the model runs and are removed when the ``with`` block ends, even
when the forward pass raises, so inspecting a model never changes it. Attention maps are recomputed with
each module's ``attention_maps`` on the exact input the module received (a pre-forward hook), so they are
the gates the forward pass applied.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from attnzoo.attention import get_attention_class, list_attentions
from attnzoo.errors import AttnzooError
from attnzoo.surgery import model_stages


class UnknownLayerError(AttnzooError, ValueError):
    """A layer name that is not a module of the model, or whose output is not a tensor."""


@dataclass
class AttentionMaps:
    """The gates of one attention module: ``maps`` as returned by its ``attention_maps`` (batch first)."""

    name: str  # module path, e.g. "layer2.1.se"
    kind: str  # registered attention name, e.g. "cbam"
    stage: int | None  # 1-based stage (attnzoo.surgery.model_stages), None outside every stage
    maps: dict[str, torch.Tensor]

    def spatial(self) -> torch.Tensor | None:
        """Where the module looks, (B, 1, H, W): its spatial map, or the channel mean of per-position gates.

        CBAM, CBAM-spatial and MHSA have a spatial map; for coordinate attention it is the mean over
        channels of the height x width gate, for SimAM of the element gate; channel-only gates have none.
        """
        if "spatial" in self.maps:
            return self.maps["spatial"]
        if "element" in self.maps:
            return self.maps["element"].mean(1, keepdim=True)
        if "height" in self.maps and "width" in self.maps:
            return (self.maps["height"] * self.maps["width"]).mean(1, keepdim=True)
        return None

    def channel(self) -> torch.Tensor | None:
        """The channel gate (B, C) of SE, ECA, CBAM and CBAM-channel; None for other modules."""
        return self.maps.get("channel")


@dataclass
class Capture:
    """Tensors recorded during forward passes, concatenated along the batch over every pass."""

    features: dict[str, torch.Tensor] = field(default_factory=dict)
    attention: list[AttentionMaps] = field(default_factory=list)

    def stage_attention(self) -> dict[int, list[AttentionMaps]]:
        """Attention modules grouped by stage, stages and modules in forward order."""
        stages: dict[int, list[AttentionMaps]] = defaultdict(list)
        for item in self.attention:
            if item.stage is not None:
                stages[item.stage].append(item)
        return dict(sorted(stages.items()))


def attention_kind(module: nn.Module) -> str | None:
    """The registered attention name ``module`` is an instance of (the most derived one), or None."""
    registered = {get_attention_class(name): name for name in list_attentions()}
    return next((registered[cls] for cls in type(module).__mro__ if cls in registered), None)


def find_attention(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """``(name, kind, module)`` of every outermost registered attention module, in definition order.

    Parts that are attention modules themselves (CBAM's ``channel`` and ``spatial`` gates) are reported
    through their parent, whose ``attention_maps`` already includes theirs.
    """
    found: list[tuple[str, str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{outer}.") for outer, _, _ in found):
            continue
        kind = attention_kind(module)
        if kind is not None:
            found.append((name, kind, module))
    return found


def stage_of(model: nn.Module) -> dict[str, int]:
    """Module name -> 1-based stage number, for every module inside a stage."""
    stage_ids = {id(stage): number for number, stage in enumerate(model_stages(model), start=1)}
    stages = {}
    for name, module in model.named_modules():
        if id(module) in stage_ids:
            stages.update({f"{name}.{sub}" if sub else name: stage_ids[id(module)]
                           for sub, _ in module.named_modules()})
    return stages


def stage_layer_names(model: nn.Module) -> list[str]:
    """Names of the model's stage modules, the natural layers to look at."""
    ids = {id(stage) for stage in model_stages(model)}
    return [name for name, module in model.named_modules() if id(module) in ids]


def check_layers(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    """The modules named ``layers``; :class:`UnknownLayerError` with close names for one that is not."""
    modules = dict(model.named_modules())
    for layer in layers:
        if layer not in modules:
            close = difflib.get_close_matches(layer, [n for n in modules if n], n=6, cutoff=0.5)
            hint = (f"close names: {', '.join(close)}" if close
                    else f"top-level layers: {', '.join(n for n, _ in model.named_children())}")
            raise UnknownLayerError(
                f"{type(model).__name__} has no layer {layer!r}; {hint} (all names: model.named_modules())"
            )
    return {layer: modules[layer] for layer in layers}


def _first_tensor(name: str, output: object) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise UnknownLayerError(f"layer {name!r} returns {type(output).__name__}, not a tensor; choose a layer "
                            "that outputs a feature map")


@contextmanager
def capturing(
    model: nn.Module,
    layers: Sequence[str] = (),
    *,
    attention: bool = True,
    keys: Collection[str] | None = None,
) -> Iterator[Capture]:
    """Record, while the block runs, the outputs of ``layers`` and every attention module's maps.

    Args:
        model: any ``nn.Module``; attention modules are instances of registered attention classes.
        layers: module names (as in ``model.named_modules()``) whose outputs to keep.
        attention: also record attention maps (each module's ``attention_maps`` on its input).
        keys: keep only these attention map names (e.g. ``{"channel"}`` for many images); default all.

    Yields:
        a :class:`Capture`, filled when the block ends (tensors concatenated over every forward pass
        in the block, detached float copies on the CPU).
    """
    capture = Capture()
    chunks: dict[str, list[torch.Tensor]] = defaultdict(list)
    handles: list[RemovableHandle] = []

    def save_feature(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            chunks[name].append(_first_tensor(name, output).detach().float().cpu().clone())
        return hook

    def save_maps(item: AttentionMaps, parts: dict[str, list[torch.Tensor]]):
        def hook(module: nn.Module, args: tuple) -> None:
            with torch.no_grad():
                maps = module.attention_maps(args[0])
            for key, value in maps.items():
                if keys is None or key in keys:
                    parts[key].append(value.detach().float().cpu())
        return hook

    attention_parts: list[tuple[AttentionMaps, dict[str, list[torch.Tensor]]]] = []
    try:
        for name, module in check_layers(model, layers).items():
            handles.append(module.register_forward_hook(save_feature(name)))
        if attention:
            stages = stage_of(model)
            for name, kind, module in find_attention(model):
                item = AttentionMaps(name, kind, stages.get(name), {})
                parts: dict[str, list[torch.Tensor]] = defaultdict(list)
                attention_parts.append((item, parts))
                handles.append(module.register_forward_pre_hook(save_maps(item, parts)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()
    capture.features = {name: torch.cat(chunks[name]) for name in layers if chunks[name]}
    for item, parts in attention_parts:
        if parts:
            item.maps = {key: torch.cat(values) for key, values in parts.items()}
            capture.attention.append(item)


@torch.no_grad()
def capture(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str] = (),
    *,
    keys: Collection[str] | None = None,
    batch_size: int = 64,
) -> tuple[Capture, torch.Tensor]:
    """Run ``model`` in eval mode on ``images`` and return what :func:`capturing` records, and the logits.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with capturing(model, layers, keys=keys) as captured:
            logits = torch.cat([model(batch) for batch in images.split(batch_size)])
    finally:
        model.train(was_training)
    return captured, logits
