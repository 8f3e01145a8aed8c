"""Property tests: whatever a recipe file or ``--set`` holds, loading it either gives a
validated recipe or a :class:`RecipeError`, never another exception (a traceback)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nstkit.config import recipe_defaults
from nstkit.errors import RecipeError
from nstkit.plugins import PluginHost
from nstkit.recipe import Recipe, load_recipe

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

WORDS = ["gatys", "content", "gram", "shifted_gram", "tv", "colour", "vgg19", "vgg16", "lbfgs",
         "adam", "sgd", "relu1_1", "relu4_2", "conv5_4", "pool2", "block4_conv2", "max", "avg",
         "random", "original", "png", "jpg", "noise", "style", "luminance", "geometric",
         "equal", "lab", "1e-3", "-1", ".nan", "../x.yaml", "/", ""]
DEFAULTS = recipe_defaults()
NESTED_KEYS = ["pooling", "weights", "format", "save_every", "quality", "scales"]
NAMES = [*DEFAULTS, *NESTED_KEYS, "extends", "set", "layers", "weight", "label", "ratio",
         "rising", "schedule", "shift", "exponent", "space", "lr", "history_size",
         "line_search", "betas", "momentum", "normalization", "iterations", "scales"]

scalars = (st.none() | st.booleans() | st.integers(-(10**40), 10**40)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(WORDS) | st.text(max_size=8))
keys = st.sampled_from(NAMES) | st.text(max_size=6) | st.integers(-3, 3)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=10)
loss = st.fixed_dictionaries({"name": st.sampled_from(WORDS[:6]) | scalars}, optional={
    "weight": scalars, "label": scalars,
    "layers": (st.lists(st.sampled_from(WORDS[6:16]) | scalars, max_size=3)
               | st.dictionaries(st.sampled_from(WORDS[6:16]), scalars, max_size=3)
               | st.fixed_dictionaries({"schedule": st.sampled_from(["geometric", "equal"])
                                        | scalars, "layers": values},
                                       optional={"ratio": scalars, "rising": scalars})
               | scalars),
    "shift": scalars, "exponent": scalars, "space": scalars, "anisotropic": scalars})
recipe_like = st.fixed_dictionaries({}, optional={
    "version": st.just(1) | scalars, "name": scalars, "description": scalars,
    "extends": st.sampled_from(["gatys", "preview", "nope"]) | scalars,
    "extractor": st.fixed_dictionaries({"name": st.sampled_from(["vgg19", "vgg16"]) | scalars},
                                       optional={"pooling": scalars, "weights": scalars,
                                                 "normalization": scalars}) | values,
    "size": scalars, "style_scale": scalars, "seed": scalars, "init": scalars,
    "noise_scale": scalars, "preserve_colour": scalars,
    "losses": st.lists(loss, max_size=3) | values,
    "optimizer": st.fixed_dictionaries(
        {"name": st.sampled_from(["lbfgs", "adam", "sgd"]) | scalars},
        optional={"iterations": scalars, "lr": scalars, "history_size": scalars,
                  "line_search": scalars, "betas": values, "momentum": scalars}) | values,
    "multiscale": st.fixed_dictionaries({"scales": values, "iterations": values}) | values,
    "output": st.dictionaries(st.sampled_from(["format", "quality", "save_every", "x"]),
                              scalars, max_size=3) | values,
    "set": st.dictionaries(st.sampled_from(["size", "losses.0.weight", "losses.5", "a.b.c",
                                            "seed", ""]) | keys, values, max_size=2) | values,
}) | st.dictionaries(keys, values, max_size=5)
set_items = st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
    ["size", "losses.0.weight", "losses.2", "losses.1.layers", "optimizer.lr", "x.y",
     "extractor.weights", "name", "multiscale.scales", "", "losses.-1", "losses.0.0"])
    | st.text(max_size=10), st.sampled_from(WORDS) | st.text(max_size=10)), max_size=3)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(autoload=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recipes")


def loads_or_recipe_error(path: Path, host: PluginHost, sets: list[str] = ()) -> None:
    """Load ``path``: a valid result is a complete recipe, anything else a RecipeError."""
    try:
        recipe, problems = load_recipe(path, sets, host=host), []
    except RecipeError as exc:
        recipe, problems = None, exc.problems
    if recipe is None:
        assert problems
        assert all(isinstance(p, str) and p for p in problems)
        return
    assert isinstance(recipe, Recipe)
    assert set(recipe.data) == set(DEFAULTS)
    assert all(math.isfinite(term.weight) and term.weight >= 0 for term in recipe.config.losses)
    assert len(recipe.hash) == 64


@SETTINGS
@given(data=recipe_like, sets=set_items)
def test_any_mapping_validates_or_gives_a_recipe_error(host: PluginHost, folder: Path,
                                                       data: dict, sets: list[str]) -> None:
    path = folder / "r.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    loads_or_recipe_error(path, host, sets)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(text=st.text(max_size=60) | st.builds("".join, st.lists(st.sampled_from(
    ["size: ", "losses:", "\n", "  - ", "{", "}", "[", "]", ",", "name: ", "gram", "&a ", "*a",
     "!!python/name:os.system", "extends: ", "gatys", "1e-3", ": ", "- ", "'", '"']),
    max_size=25)))
def test_any_text_validates_or_gives_a_recipe_error(host: PluginHost, folder: Path,
                                                    text: str) -> None:
    path = folder / "t.yaml"
    path.write_text(text, "utf-8")
    loads_or_recipe_error(path, host)
