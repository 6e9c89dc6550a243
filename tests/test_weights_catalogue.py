"""docs/weights.md is what scripts/weights_catalogue.py makes of the registry, so the catalogue cannot go
stale; its cost figures come from a committed file, spot-checked here against attnzoo's counter."""

import importlib.util
import sys
from pathlib import Path

import pytest

import attnzoo  # noqa: F401  (registers attnzoo's names in timm)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def catalogue():
    spec = importlib.util.spec_from_file_location("weights_catalogue", ROOT / "scripts" / "weights_catalogue.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(catalogue):
    return catalogue.registered_rows() + catalogue.converted_rows()


def test_committed_catalogue_is_the_scripts_output(catalogue, rows):
    costs = catalogue.read_costs()
    missing = sorted({r.cost_key for r in rows} - set(costs))
    assert not missing, f"no cost for {missing[:3]}: run python scripts/weights_catalogue.py"
    assert catalogue.CATALOGUE.read_text(encoding="utf-8") == catalogue.render(rows, costs), (
        "docs/weights.md is stale: run python scripts/weights_catalogue.py")


def test_every_registered_tag_with_weights_is_listed_with_a_kind(catalogue, rows):
    listed = {r.name_tag: r.kind for r in rows}
    assert set(listed.values()) <= set(catalogue.KINDS)
    assert listed["resnet50_se.ra2_in1k"] == "published"
    assert listed["resnet18_cbam.a1_in1k_untrained_attn"] == "preserving"
    assert listed["resnet18_cbam.fmnist"] == "fmnist-trained"
    assert listed["resnet50_cbam.official_in1k"] == "converted"


@pytest.mark.parametrize("name_tag", ["cnn3_se.fmnist", "resnet18_cbam.official_in1k"])
def test_cached_costs_match_a_fresh_count(catalogue, rows, name_tag):
    """The cost file holds attnzoo's own counts: two rows counted again, exactly."""
    row = next(r for r in rows if r.name_tag == name_tag)
    assert catalogue.read_costs()[row.cost_key] == catalogue.count_cost(row)
