"""Checkpoint sources that ``attnzoo convert`` reads, by name.

A source is a third-party code base whose checkpoints map exactly onto attnzoo architectures. Each one is
a :class:`Source` subclass in its own module, registered with :func:`register_source`. A package adds its
own the same way and names the module in the ``attnzoo.convert_sources`` entry point group, so that
``attnzoo convert --from NAME`` finds it without an import.
"""

from __future__ import annotations

import functools
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attnzoo.errors import ConvertError

IMAGENET_EVAL = dict(
    input_size=(3, 224, 224),
    interpolation="bilinear",
    crop_pct=0.875,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)


@dataclass(frozen=True)
class PublishedResult:
    """An accuracy the source's authors published for a released checkpoint (never measured by attnzoo)."""

    checkpoint: str  # the released file's name
    top1: float
    citation: str  # where the figure is published, so a reader can check it
    top5: float | None = None


class Source(ABC):
    """One checkpoint format: how to find its weights and rename them into an attnzoo architecture.

    Subclasses set the class attributes and implement :meth:`weights_of` and :meth:`to_attnzoo`. The
    conversion is accepted only if the renamed weights load strictly, so a mapping cannot silently drop
    or invent a tensor other than the ones it documents in ``notes``.
    """

    name: str  # the --from value
    title: str  # who wrote the source code, for the card
    repo_url: str
    license: str  # Hub licence id of the source repository
    tag: str  # pretrained tag of converted weights, e.g. "official_in1k"
    # attnzoo architecture -> the source's own model constructor, for the card
    architectures: Mapping[str, str]
    published: Mapping[str, tuple[PublishedResult, ...]] = {}
    data_config: Mapping[str, Any] = IMAGENET_EVAL
    notes: tuple[str, ...] = ()  # what the mapping does besides renaming, for the card and docs

    @abstractmethod
    def weights_of(self, checkpoint: dict[str, Any], source: str) -> dict[str, torch.Tensor]:
        """The model's tensors out of the loaded file ``checkpoint`` (named ``source`` in errors)."""

    @abstractmethod
    def model_kwargs(self, weights: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
        """timm model arguments the weights imply (e.g. ``num_classes`` from the classifier)."""

    @abstractmethod
    def to_attnzoo(
        self, weights: Mapping[str, torch.Tensor], model: nn.Module
    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        """``(state_dict for model, source keys the mapping does not know)``."""

    def guess_architecture(self, weights: Mapping[str, torch.Tensor]) -> str | None:
        """The architecture the weights look like, to suggest when they do not fit the chosen one."""
        return None


_SOURCES: dict[str, Source] = {}
ENTRY_POINT_GROUP = "attnzoo.convert_sources"


@functools.cache
def _load_plugins() -> None:
    """Import the modules that installed packages name in :data:`ENTRY_POINT_GROUP` (they register)."""
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()


def register_source(source: Source) -> Source:
    """Make ``source`` available to ``attnzoo convert --from source.name``."""
    _SOURCES[source.name] = source
    return source


def list_sources() -> list[str]:
    """Names of the registered sources."""
    _load_plugins()
    return sorted(_SOURCES)


def get_source(name: str) -> Source:
    """The registered source ``name``; :class:`ConvertError` naming the known ones otherwise."""
    _load_plugins()
    if name not in _SOURCES:
        raise ConvertError(f"unknown source {name!r}; known sources: {', '.join(list_sources())}")
    return _SOURCES[name]
