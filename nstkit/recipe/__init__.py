"""YAML recipes: one file describes a whole stylisation (see the README's "Recipes")."""

from nstkit.recipe.loader import builtin_recipes, load_recipe, parse_set
from nstkit.recipe.model import Recipe
from nstkit.recommended import RECOMMENDED

__all__ = ["RECOMMENDED", "Recipe", "builtin_recipes", "load_recipe", "parse_set"]
