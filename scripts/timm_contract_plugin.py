"""pytest plugin that points timm's own ``tests/test_models.py`` at attnzoo's registered names.

Loaded by ``scripts/timm_model_tests.py`` (``pytest -p timm_contract_plugin``), never by attnzoo's suite.

How attnzoo's names get exactly the exclusions of their base model: test_models.py parametrizes each
per-model test with ``list_models(filter, module, pretrained, exclude_filters, name_matches_cfg,
include_tags)`` when the file is imported, excluding models by fnmatch patterns (``EXCLUDE_FILTERS``,
``NON_STD_FILTERS``, ``EXCLUDE_JIT_FILTERS``, ``EXCLUDE_FX_FILTERS``, ...) and selecting some tests by
timm module (``FEAT_INTER_FILTERS``). This plugin replaces ``timm.list_models`` before that import. The
replacement asks timm's own ``list_models`` the same question (the same filters, modules and exclusions)
about each attnzoo name's base architecture (``resnet50`` for ``resnet50_cbam``; the ``cnn3`` family's base
is ``cnn3``, registered in attnzoo's ``registry`` module) and keeps the attnzoo names whose base timm lists.
What is a property of the name itself (``pretrained``: has weights; ``name_matches_cfg``; ``include_tags``:
one case per pretrained tag) is then answered by timm for the attnzoo name. Collected cases whose
``model_name`` is not one of those names are deselected: the file's hand-picked cases test timm's models.

The names come from ``$ATTNZOO_TIMM_MODELS`` (comma-separated architectures); each case's outcome is written
as JSON lines to ``$ATTNZOO_TIMM_REPORT``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import pytest
import timm

import attnzoo  # noqa: F401  (registers attnzoo's names in timm)
from attnzoo.models.registry import INJECTED

_timm_list_models = timm.list_models
SELECTED = [name for name in os.environ.get("ATTNZOO_TIMM_MODELS", "").split(",") if name]
_listed: set[str] = set()
_model_of: dict[str, str] = {}  # nodeid -> model_name of the kept cases


def base_architecture(name: str) -> str:
    """The timm architecture an attnzoo name is built on (itself for ``cnn3``)."""
    arch = name.split(".")[0]
    return INJECTED.get(arch, arch)


def list_models(
    filter: str | Iterable[str] = "",  # noqa: A002 - timm's signature
    module: str | Iterable[str] = "",
    pretrained: bool = False,
    exclude_filters: str | Iterable[str] = "",
    name_matches_cfg: bool = False,
    include_tags: bool | None = None,
) -> list[str]:
    """timm's ``list_models`` for the selected attnzoo names, each included iff timm includes its base."""
    if not SELECTED:
        return []
    bases = set(_timm_list_models(filter, module, exclude_filters=exclude_filters))
    own = _timm_list_models(
        SELECTED, pretrained=pretrained, name_matches_cfg=name_matches_cfg, include_tags=include_tags
    )
    names = [name for name in own if base_architecture(name) in bases]
    _listed.update(names)
    return names


timm.list_models = list_models


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the cases parametrized with a name this plugin listed."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("model_name") if callspec else None
        if name in _listed:
            keep.append(item)
            _model_of[item.nodeid] = name
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """Record every case that will run (after ``-k``/``-m``), so that one whose process dies shows as not run."""
    for item in session.items:
        _write(dict(nodeid=item.nodeid, model_name=_model_of[item.nodeid], when="collect", outcome="collected",
                    seconds=0.0, reason=""))


def _write(record: dict) -> None:
    path = os.environ.get("ATTNZOO_TIMM_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    return text.strip().splitlines()[0] if text.strip() else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One JSON line per case: its id, outcome, seconds and, on failure or skip, the reason's first line."""
    if report.when != "call" and report.passed:
        return
    if report.passed:
        reason = ""
    elif report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2]
    else:
        reason = _first_line(report)
    _write(dict(nodeid=report.nodeid, model_name=_model_of.get(report.nodeid, ""), when=report.when,
                outcome=report.outcome, seconds=round(report.duration, 3), reason=reason))
