"""Training recipes: YAML files checked against a typed schema before any work starts.

A recipe is a tree of dataclasses (:class:`Recipe` at the root). Loading merges the files named under
``defaults:`` (paths relative to the recipe, later ones win, the recipe itself last), applies ``--set``
overrides, then validates every key and type, so a typo fails in the first second with the field's dotted
name rather than after an hour of training.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from attnzoo.errors import RecipeError
from attnzoo.train.validation import check_values


@dataclass
class ModelSection:
    """What to train: a registered name, plus optional surgery and a starting point."""

    name: str
    attention: str | None = None
    stages: list[int] | None = None
    preserve: bool = False
    attn_kwargs: dict[str, Any] = field(default_factory=dict)
    small_input: bool = False
    pretrained: bool = False
    init: str | None = None  # "hf-hub:org/repo" or a .safetensors path to start from
    num_classes: int | None = None  # default: the dataset's
    in_chans: int | None = None  # default: the dataset's
    drop_rate: float = 0.0
    channels_last: bool = False


@dataclass
class DataSection:
    """Where the images come from. ``fashion-mnist`` and ``folder`` are built in; any other name goes to
    ``timm.data.create_dataset`` (e.g. ``torch/cifar10``, ``hfds/...``)."""

    dataset: str = "fashion-mnist"
    root: str | None = None
    img_size: int | None = None  # default: the dataset's native size
    resize: Literal["pad", "bilinear"] = "pad"  # how in-memory datasets reach img_size
    train_split: str = "train"
    val_split: str = "val"  # selects the best checkpoint; never the split that is reported as test
    test_split: str | None = None  # evaluated once at the end (final and best weights), never for selection
    train_subset: int | None = None  # train on a fixed stratified subset of this many images (fashion-mnist)
    download: bool = False
    workers: int = 2  # DataLoader workers for folder/timm datasets (in-memory data uses none)


@dataclass
class AugSection:
    """Training augmentation. In-memory datasets apply crop/flip/erase to whole batches; folder and timm
    datasets use ``timm.data.create_transform`` with the same fields."""

    crop_padding: int = 0  # random crop after zero-padding each side by this many pixels
    hflip: float = 0.0
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop (folder/timm)
    auto_augment: str | None = None  # timm spec, e.g. "rand-m9-mstd0.5" (folder/timm)
    color_jitter: float | None = None  # folder/timm
    re_prob: float = 0.0  # random erasing probability


@dataclass
class OptimSection:
    """Arguments of ``timm.optim.create_optimizer_v2``."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    filter_bias_and_bn: bool = True


@dataclass
class SchedSection:
    """Arguments of ``timm.scheduler.create_scheduler_v2`` (``plateau`` is ReduceLROnPlateau on val top-1)."""

    name: Literal["cosine", "step", "multistep", "plateau", "tanh", "poly", "none"] = "cosine"
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    decay_epochs: float = 30.0  # step
    decay_milestones: list[int] = field(default_factory=lambda: [30, 60, 90])  # multistep
    decay_rate: float = 0.1
    patience_epochs: int = 10  # plateau
    cooldown_epochs: int = 0
    per_step: bool = True  # update the lr every optimizer step (else once per epoch)


@dataclass
class EmaSection:
    """Exponential moving average of the weights (``timm.utils.ModelEmaV3``); evaluated instead of the
    live weights when enabled."""

    enabled: bool = False
    decay: float = 0.9998
    warmup: bool = False


@dataclass
class MixupSection:
    """``timm.data.Mixup``; off while both alphas are 0."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: Literal["batch", "pair", "elem"] = "batch"


@dataclass
class Recipe:
    """One training run. ``batch_size`` is the global batch, split evenly across processes."""

    model: ModelSection
    data: DataSection = field(default_factory=DataSection)
    aug: AugSection = field(default_factory=AugSection)
    optim: OptimSection = field(default_factory=OptimSection)
    sched: SchedSection = field(default_factory=SchedSection)
    ema: EmaSection = field(default_factory=EmaSection)
    mixup: MixupSection = field(default_factory=MixupSection)
    name: str | None = None  # run folder name; default: the recipe file's stem
    output: str = "runs"
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int | None = None
    amp: Literal["off", "bf16", "fp16"] = "off"
    label_smoothing: float = 0.0
    seed: int = 0
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps (0: at epoch ends only)
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests, profiling)
    threads: int | None = None  # torch intra-op threads per process
    device: str = "auto"  # auto: cuda:<local rank> if available, else cpu


def load_recipe(
    path: str | os.PathLike,
    overrides: typing.Sequence[str] = (),
    seed: int | None = None,
) -> tuple[Recipe, Path]:
    """Read, merge, override and validate the recipe at ``path``; returns it and the resolved path.

    ``overrides`` are ``section.field=value`` strings whose value is parsed as YAML (so ``0.05``, ``true``,
    ``[1, 2]`` and ``null`` have their types). ``seed`` overrides ``seed`` (the ``--seed`` flag).
    """
    path = Path(path)
    raw = _read_with_defaults(path, chain=())
    for item in overrides:
        _apply_override(raw, item)
    if seed is not None:
        raw["seed"] = seed
    raw.setdefault("name", path.stem)
    return recipe_from_dict(raw), path.resolve()


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    """Validate a recipe given as plain data (what a YAML file holds after ``defaults`` are merged)."""
    recipe = _build(Recipe, raw, prefix="")
    check_values(recipe)
    check_paths(recipe)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain data, as saved in ``runs/<name>/recipe.yaml``."""
    return dataclasses.asdict(recipe)


def check_paths(recipe: Recipe) -> None:
    """Fail now, not at data-loading time, when a dataset or init path cannot exist."""
    data = recipe.data
    if data.dataset == "folder" and not data.root:
        raise RecipeError("recipe field data.root: required when data.dataset is 'folder'; set it to the "
                          "folder holding one subfolder per class (or train/ and val/ splits)")
    if data.root and data.dataset != "fashion-mnist" and not data.download and not Path(data.root).exists():
        raise RecipeError(f"recipe field data.root: {data.root} does not exist; fix the path or set "
                          "data.download=true where the dataset can be downloaded")
    init = recipe.model.init
    if init and not init.startswith("hf-hub:") and not Path(init).is_file():
        raise RecipeError(f"recipe field model.init: {init} is not a file; give a .safetensors path or "
                          "hf-hub:org/repo")
    if data.test_split is not None and data.test_split in (data.train_split, data.val_split):
        raise RecipeError(f"recipe field data.test_split: {data.test_split!r} is also the train or val split; "
                          "the test split must be held out of training and selection")
    if data.train_subset is not None and (data.train_subset < 1 or data.dataset != "fashion-mnist"):
        raise RecipeError(f"recipe field data.train_subset: {data.train_subset} must be >= 1 and needs "
                          "data.dataset fashion-mnist; remove it or set null")


MAX_RECIPE_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without aliases: ``*name`` references let a few lines expand to gigabytes (a billion laughs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in recipes; write the "
                                              "value out", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _load_yaml(text: str) -> Any:
    """``text`` parsed as safe YAML without aliases (:class:`yaml.YAMLError` when it is not)."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist; see recipes/ for the shipped ones")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe {path} is {path.stat().st_size} bytes; a recipe is at most {MAX_RECIPE_BYTES}")
    try:
        data = _load_yaml(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RecipeError(f"recipe {path} is not valid YAML: {(str(err).splitlines() or ['?'])[0]}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def _read_with_defaults(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """``path``'s mapping merged on top of the files its ``defaults:`` names (recursively)."""
    if path.resolve() in chain:
        raise RecipeError(f"recipe {path}: defaults form a cycle ({' -> '.join(str(p) for p in chain)})")
    data = _read_yaml(path)
    bases = data.pop("defaults", []) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise RecipeError(f"recipe {path}: defaults file {base_path} does not exist; paths are relative "
                              "to the recipe")
        merged = _merge(merged, _read_with_defaults(base_path, chain + (path.resolve(),)))
    return _merge(merged, data)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "attn_kwargs":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise RecipeError(f"override {item!r}: expected section.field=value, e.g. optim.lr=0.05")
    try:
        value = _load_yaml(text)
    except yaml.YAMLError:
        raise RecipeError(f"override {item!r}: value {text!r} is not valid YAML") from None
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"override {item!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp)) if typing.get_origin(tp) is None else str(tp).replace("typing.", "")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, naming the dotted field on any mismatch."""
    where = prefix.rstrip(".") or "(top level)"
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe field {where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise RecipeError(f"recipe field {prefix}{key}: unknown key; valid keys: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _convert(hints[name], raw[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"recipe field {prefix}{name}: missing (required)")
    return cls(**values)


def _convert(tp: Any, value: Any, name: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, f"{name}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own, more precise message
            return _convert(options[0], value, name)
        for arg in options:
            try:
                return _convert(arg, value, name)
            except RecipeError:
                continue
        raise RecipeError(f"recipe field {name}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise RecipeError(f"recipe field {name}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_convert(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is int or tp is bool or tp is str:
        if type(value) is tp:
            return value
    elif tp is Any:
        return value
    raise RecipeError(f"recipe field {name}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
