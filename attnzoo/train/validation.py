"""Range checks on a recipe's values, after the schema has checked their types and before any work starts.

A type-correct value can still be meaningless (``img_size: 0``, ``hflip: 5``, a NaN learning rate) or
dangerous (``name: ../../x`` writes outside ``output``). Each rule names the dotted field and its allowed
range, so the error is one line that says what to write instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import torch

from attnzoo.errors import RecipeError
from attnzoo.models.config_check import MAX_CLASSES, MAX_IMG_SIZE, MAX_IN_CHANS

# A run folder name: one path component, no hidden or parent folder, no separators or spaces.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,127}")
MAX_THREADS = 1024  # torch intra-op threads; far beyond it, OpenMP crashes (a segfault at 100,000)
MAX_WORKERS = 256  # data loader processes


Rule = tuple[Callable[[Any], bool], str]  # (accepts the value, what is allowed)


def _real(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Rule:
    def ok(v: Any) -> bool:
        return (isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if lo_open else v >= lo)
                and (v < hi if hi_open else v <= hi))

    hi_text = "inf" if hi == math.inf else f"{hi:g}"
    return ok, f"a finite number in {'(' if lo_open else '['}{lo:g}, {hi_text}{')' if hi_open or hi == math.inf else ']'}"


def _int(lo: int, hi: int, *, optional: bool = False) -> Rule:
    def ok(v: Any) -> bool:
        return (optional and v is None) or (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi)

    return ok, ("null or " if optional else "") + f"an integer in {lo}..{hi}"


_PROB = _real(0, 1)
_NONNEG = _real(0, math.inf)
_RULES: dict[str, Rule] = {
    "epochs": _int(1, 100_000),
    "batch_size": _int(1, 1 << 20),
    "eval_batch_size": _int(1, 1 << 20, optional=True),
    "max_steps": _int(1, 1 << 40, optional=True),
    "checkpoint_every": _int(0, 1 << 40),
    "threads": _int(1, MAX_THREADS, optional=True),
    "seed": _int(0, 2**32 - 1),
    "label_smoothing": _real(0, 1, hi_open=True),
    "model.num_classes": _int(1, MAX_CLASSES, optional=True),
    "model.in_chans": _int(1, MAX_IN_CHANS, optional=True),
    "model.drop_rate": _real(0, 1, hi_open=True),
    "data.img_size": _int(8, MAX_IMG_SIZE, optional=True),
    "data.workers": _int(0, MAX_WORKERS),
    "aug.crop_padding": _int(0, 64),
    "aug.hflip": _PROB,
    "aug.re_prob": _PROB,
    "optim.lr": _NONNEG,
    "optim.momentum": _real(0, 1, hi_open=True),
    "optim.weight_decay": _NONNEG,
    "sched.warmup_epochs": _NONNEG,
    "sched.warmup_lr": _NONNEG,
    "sched.min_lr": _NONNEG,
    "sched.decay_epochs": _real(0, math.inf, lo_open=True),
    "sched.decay_rate": _real(0, 1, lo_open=True),
    "sched.patience_epochs": _int(0, 100_000),
    "sched.cooldown_epochs": _int(0, 100_000),
    "ema.decay": _real(0, 1, lo_open=True, hi_open=True),
    "mixup.mixup_alpha": _NONNEG,
    "mixup.cutmix_alpha": _NONNEG,
    "mixup.prob": _PROB,
    "mixup.switch_prob": _PROB,
}


def _get(recipe: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        recipe = getattr(recipe, part)
    return recipe


def check_values(recipe: Any) -> None:
    """Raise :class:`RecipeError` naming the first field whose value is outside its allowed range."""
    for field, (ok, allowed) in _RULES.items():
        value = _get(recipe, field)
        if not ok(value):
            raise RecipeError(f"recipe field {field}: {value!r} is out of range; expected {allowed}")
    _check_name(recipe.name, recipe.output)
    _check_lists(recipe)
    _check_optimizer(recipe.optim.name)
    _check_device(recipe.device)
    _check_model(recipe.model)


def _check_name(name: Any, output: str) -> None:
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise RecipeError(f"recipe field name: {name!r} is not a run folder name; use letters, digits and . _ + = "
                          "@ - (up to 128, starting with a letter or digit), e.g. resnet18_cbam-s0")
    if not output.strip():
        raise RecipeError("recipe field output: empty; give the folder that holds run folders, e.g. runs")


def _check_lists(recipe: Any) -> None:
    scale = recipe.aug.scale
    if len(scale) != 2 or not all(math.isfinite(v) for v in scale) or not 0 < scale[0] <= scale[1] <= 1:
        raise RecipeError(f"recipe field aug.scale: {scale!r} is out of range; expected [min, max] with "
                          "0 < min <= max <= 1")
    if recipe.aug.color_jitter is not None and not (math.isfinite(recipe.aug.color_jitter)
                                                    and 0 <= recipe.aug.color_jitter <= 1):
        raise RecipeError(f"recipe field aug.color_jitter: {recipe.aug.color_jitter!r} is out of range; expected "
                          "null or a number in [0, 1]")
    milestones = recipe.sched.decay_milestones
    if any(m < 1 for m in milestones) or milestones != sorted(set(milestones)):
        raise RecipeError(f"recipe field sched.decay_milestones: {milestones!r}; expected increasing epoch "
                          "numbers >= 1")


def _check_optimizer(name: str) -> None:
    from timm.optim import list_optimizers

    known = list_optimizers()
    if name.lower() not in known:
        import difflib

        close = difflib.get_close_matches(name.lower(), known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "e.g. sgd, adamw, lamb (timm.optim.list_optimizers())"
        raise RecipeError(f"recipe field optim.name: {name!r} is not a timm optimizer; {hint}")


def _check_device(device: str) -> None:
    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise RecipeError(f"recipe field device: {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"recipe field device: {device!r} but no CUDA GPU is visible; use device=cpu or auto")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise RecipeError(f"recipe field device: {device!r} but only {torch.cuda.device_count()} GPU(s) are visible")
    if parsed.type not in ("cpu", "cuda"):
        raise RecipeError(f"recipe field device: {device!r} is not supported; use auto, cpu, cuda or cuda:N")


def _check_model(model: Any) -> None:
    from attnzoo.attention import check_kwargs, get_attention_class
    from attnzoo.attention.arguments import check_values as check_attention_values
    from attnzoo.errors import AttnzooError
    from attnzoo.hub_client import split_hub_name
    from attnzoo.models.build import check_model_name

    for field, check, value in (("name", check_model_name, model.name), ("init", split_hub_name, model.init)):
        if field == "name" or (value or "").startswith("hf-hub:"):
            try:
                check(value)
            except AttnzooError as err:
                raise RecipeError(f"recipe field model.{field}: {err}") from None
    if model.stages is not None and not model.stages:
        raise RecipeError("recipe field model.stages: empty; list stage numbers (from 1), or null for the default")
    if model.stages and any(s < 1 for s in model.stages):
        raise RecipeError(f"recipe field model.stages: {model.stages!r}; stage numbers count from 1")
    if model.attention is None:
        if model.attn_kwargs or model.stages is not None or model.preserve:
            raise RecipeError("recipe field model.attention: null, but model.attn_kwargs/stages/preserve are set; "
                              "name the attention (e.g. cbam) or remove them")
        return
    try:
        get_attention_class(model.attention)
    except AttnzooError as err:
        raise RecipeError(f"recipe field model.attention: {err}") from None
    if model.preserve and not hasattr(get_attention_class(model.attention), "init_identity"):
        raise RecipeError(f"recipe field model.preserve: attention {model.attention!r} has no parameters to start "
                          "as the identity; set preserve=false or choose another attention")
    try:
        check_kwargs(model.attention, model.attn_kwargs)
        check_attention_values(model.attention, model.attn_kwargs)
    except AttnzooError as err:
        raise RecipeError(f"recipe field model.attn_kwargs: {err}") from None
