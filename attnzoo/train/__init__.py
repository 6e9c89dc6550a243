"""Training from recipes: schema, trainer, distributed set-up and checkpoints."""

from attnzoo.train.recipe import Recipe, load_recipe, recipe_from_dict, recipe_to_dict
from attnzoo.train.trainer import NonFiniteLossError, TrainingInterrupted, train

__all__ = ["NonFiniteLossError", "Recipe", "TrainingInterrupted", "load_recipe", "recipe_from_dict", "recipe_to_dict",
           "train"]
