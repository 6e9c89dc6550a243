"""Recipe schema: every mistake fails before any work, naming the field; defaults and overrides merge."""

from pathlib import Path

import pytest
import yaml

from attnzoo.errors import RecipeError
from attnzoo.models import check_model_name
from attnzoo.train import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _recipe(tmp_path: Path, body: dict, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body))
    return path


def test_unknown_key_names_field_and_valid_keys(tmp_path):
    path = _recipe(tmp_path, {"model": {"name": "resnet18"}, "optim": {"lrr": 0.1}})
    with pytest.raises(RecipeError, match=r"recipe field optim\.lrr: unknown key; valid keys: name, lr, momentum"):
        load_recipe(path)


def test_wrong_type_names_field_expected_and_got(tmp_path):
    path = _recipe(tmp_path, {"model": {"name": "resnet18"}, "epochs": "ten"})
    with pytest.raises(RecipeError, match=r"recipe field epochs: expected int, got str 'ten'"):
        load_recipe(path)


def test_bool_is_not_accepted_as_int(tmp_path):
    path = _recipe(tmp_path, {"model": {"name": "resnet18"}, "batch_size": True})
    with pytest.raises(RecipeError, match=r"recipe field batch_size: expected int"):
        load_recipe(path)


def test_choice_field_lists_choices(tmp_path):
    path = _recipe(tmp_path, {"model": {"name": "resnet18"}, "sched": {"name": "cosyne"}})
    with pytest.raises(RecipeError, match=r"recipe field sched\.name: 'cosyne' is not one of 'cosine', 'step'"):
        load_recipe(path)


def test_missing_required_model_name(tmp_path):
    path = _recipe(tmp_path, {"model": {"attention": "se"}})
    with pytest.raises(RecipeError, match=r"recipe field model\.name: missing \(required\)"):
        load_recipe(path)


def test_missing_dataset_folder(tmp_path):
    path = _recipe(tmp_path, {"model": {"name": "resnet18"},
                              "data": {"dataset": "folder", "root": str(tmp_path / "nowhere")}})
    with pytest.raises(RecipeError, match=r"recipe field data\.root: .*nowhere does not exist"):
        load_recipe(path)


def test_list_items_are_checked(tmp_path):
    path = _recipe(tmp_path, {"model": {"name": "resnet18", "stages": [1, "two"]}})
    with pytest.raises(RecipeError, match=r"recipe field model\.stages\[1\]: expected int, got str 'two'"):
        load_recipe(path)


def test_defaults_merge_deeply_and_recipe_wins(tmp_path):
    _recipe(tmp_path, {"model": {"name": "resnet18", "small_input": True}, "optim": {"lr": 0.2, "momentum": 0.8}},
            "base.yaml")
    path = _recipe(tmp_path, {"defaults": "base.yaml", "model": {"name": "resnet18_se"}, "optim": {"lr": 0.05}})
    recipe, _ = load_recipe(path)
    assert recipe.model.name == "resnet18_se" and recipe.model.small_input is True
    assert (recipe.optim.lr, recipe.optim.momentum) == (0.05, 0.8)
    assert recipe.name == "r"  # the recipe file's stem, not the base's


def test_overrides_are_yaml_typed(tmp_path):
    path = _recipe(tmp_path, {"model": {"name": "resnet18"}})
    recipe, _ = load_recipe(path, ["optim.lr=0.05", "model.attention=se", "model.stages=[3, 4]", "ema.enabled=true",
                                   "name=exp1"], seed=7)
    assert recipe.optim.lr == 0.05 and recipe.model.stages == [3, 4] and recipe.ema.enabled is True
    assert recipe.name == "exp1" and recipe.seed == 7


def test_float_fields_accept_exponent_without_dot(tmp_path):
    recipe, _ = load_recipe(_recipe(tmp_path, {"model": {"name": "resnet18"}}), ["optim.weight_decay=1e-4"])
    assert recipe.optim.weight_decay == pytest.approx(1e-4)


def test_override_of_unknown_field_fails_like_the_file(tmp_path):
    path = _recipe(tmp_path, {"model": {"name": "resnet18"}})
    with pytest.raises(RecipeError, match=r"recipe field optim\.lrr: unknown key"):
        load_recipe(path, ["optim.lrr=0.1"])
    with pytest.raises(RecipeError, match=r"override 'optim\.lr': expected section\.field=value"):
        load_recipe(path, ["optim.lr"])


def test_defaults_cycle_is_reported(tmp_path):
    _recipe(tmp_path, {"defaults": "b.yaml", "model": {"name": "resnet18"}}, "a.yaml")
    _recipe(tmp_path, {"defaults": "a.yaml"}, "b.yaml")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


@pytest.mark.parametrize("path", sorted(p for p in RECIPES.rglob("*.yaml") if not p.name.startswith("_")),
                         ids=lambda p: str(p.relative_to(RECIPES)))
def test_shipped_recipes_validate_and_name_registered_models(path, tmp_path):
    """Every shipped recipe is complete (``_*.yaml`` files are partial bases for ``defaults:``); ImageNet ones
    only need their data.root pointed at a real folder."""
    overrides = [] if "fashion_mnist" in path.parts else [f"data.root={tmp_path}"]
    recipe, _ = load_recipe(path, overrides)
    check_model_name(recipe.model.name)
    assert recipe.epochs >= 1


def test_imagenet_recipe_without_data_root_says_how_to_fix():
    with pytest.raises(RecipeError, match=r"recipe field data\.root: /data/imagenet does not exist"):
        load_recipe(RECIPES / "imagenet" / "cbam_paper" / "resnet50_cbam.yaml")


def test_cli_prints_recipe_error_as_one_line_and_exits_2(tmp_path, capsys):
    from attnzoo_cli import main

    path = _recipe(tmp_path, {"model": {"name": "resnet18"}})
    assert main(["train", str(path), "--set", "optim.lrr=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnzoo train: error: recipe field optim.lrr: unknown key") and "\n" not in err
