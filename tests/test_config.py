"""The typed configuration: defaults, keyword overrides, component options, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import jsonschema
import pytest
import torch
from pydantic import Field
from typer.testing import CliRunner

from nstkit.config import Options, StylizeConfig, recipe_defaults
from nstkit.config_options import options_from_signature
from nstkit.config_overrides import apply_overrides
from nstkit.config_schema import config_model, recipe_json_schema, validate_config
from nstkit.errors import ConfigError, RecipeError
from nstkit.hookspecs import hookimpl
from nstkit.losses import ContentLoss
from nstkit.plugins import PluginHost
from nstkit.recipe import builtin_recipes, load_recipe
from nstkit.recipe.yamlio import parse
from nstkit.testing import make_host

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_the_defaults_are_gatys_2016_as_every_recipe_spells_them() -> None:
    assert recipe_defaults() == {
        "version": 1, "name": None, "description": "",
        "extractor": {"name": "vgg19", "pooling": "max", "weights": None},
        "size": 512, "style_scale": 1.0, "seed": 0, "init": "content", "noise_scale": 0.1,
        "losses": [{"name": "content", "weight": 1.0, "layers": ["relu4_2"]},
                   {"name": "gram", "weight": 1e-3,
                    "layers": ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]}],
        "preserve_colour": None, "optimizer": {"name": "lbfgs", "iterations": 500},
        "ema": None, "strength": 1.0, "multiscale": None, "precision": "fp32", "tiling": None,
        "output": {"format": "png", "quality": 95, "bit_depth": 8, "save_every": 0},
        "styles": [], "regions": None, "masks": None}
    # the recipe file's defaults and the Python API's are one model: they validate into it
    # and dump back unchanged
    config = config_model(PluginHost(autoload=False)).model_validate(recipe_defaults())
    assert config.model_dump(exclude_unset=True) == recipe_defaults()
    assert StylizeConfig().model_dump(exclude_unset=True) == {}


class TestOverrides:
    host = PluginHost(autoload=False)

    def apply(self, **overrides: object) -> StylizeConfig:
        return apply_overrides(StylizeConfig(), overrides, self.host)

    def test_no_overrides_returns_the_config_itself_unvalidated(self) -> None:
        config = StylizeConfig()
        assert apply_overrides(config, {}, self.host) is config

    def test_keyword_shorthands_are_config_keys(self) -> None:
        config = self.apply(iterations=7, optimizer="adam", optimizer_options={"lr": 0.1},
                            pooling="avg", weights="random", size=64, seed=None)
        assert (config.optimizer.name, config.iterations) == ("adam", 7)
        assert config.optimizer.options == {"lr": 0.1}
        assert config.extractor.options == {"pooling": "avg", "weights": "random"}
        assert (config.size, config.seed) == (64, None)

    def test_gatys_shorthands_become_the_losses(self) -> None:
        config = self.apply(style_weight=1e-2, style_loss="shifted_gram", tv_weight=5.0,
                            content_layers=["relu3_1"])
        assert [(t.name, t.weight, t.layers) for t in config.losses] == [
            ("content", 1.0, ["relu3_1"]),
            ("shifted_gram", 1e-2, ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]),
            ("tv", 5.0, None)]

    def test_multiscale_pairs_and_detail(self) -> None:
        config = self.apply(multiscale=[(0.5, 1), (1.0, 3)], multiscale_detail=False)
        assert config.multiscale.stages() == [(0.5, 1), (1.0, 3)]
        assert config.multiscale.detail is False

    def test_every_problem_of_the_overrides_at_once(self) -> None:
        with pytest.raises(ConfigError) as info:
            self.apply(size="big", optimizer="adamw", preserve_colour="sepia")
        assert info.value.problems == [
            "stylize(): size: must be an integer or null, got 'big'",
            "stylize(): preserve_colour: must be 'luminance', 'linear', 'histogram' or null; "
            "got 'sepia'",
            "stylize(): optimizer.name: unknown optimizer 'adamw'. Did you mean 'adam'? "
            "Available: adam, lbfgs, sgd."]
        assert isinstance(info.value, ValueError)  # as stylize() raised before


class StrengthOptions(Options):
    """A plugin's options model."""

    strength: Annotated[float, Field(gt=0, le=10)] = 1.0


def strength_loss(*, layers: object = None, strength: float = 1.0) -> ContentLoss:
    """A plugin loss whose options are read from its signature."""
    return ContentLoss(layers)


class _Plugin:
    @hookimpl
    def register_losses(self, register) -> None:
        register("modelled", strength_loss, options=StrengthOptions)
        register("signed", strength_loss)
        register("lazy", f"{__name__}:strength_loss", options=StrengthOptions)


@pytest.fixture
def plugin_host() -> PluginHost:
    return PluginHost([_Plugin()], autoload=False)


@pytest.mark.parametrize("name", ["modelled", "signed", "lazy"])
def test_a_plugins_options_get_the_same_checks(plugin_host: PluginHost, name: str) -> None:
    recipe = load_recipe("gatys", [f"losses.1={{name: {name}, strength: 2}}"], host=plugin_host)
    assert recipe.config.losses[1].options == {"strength": 2}
    with pytest.raises(RecipeError) as info:
        load_recipe("gatys", [f"losses.1={{name: {name}, strength: abc, strenght: 1}}"],
                    host=plugin_host)
    assert "--set: losses[1].strength: must be a number, got 'abc'" in info.value.problems[0]
    assert info.value.problems[1] == (f"--set: losses[1].strenght: unknown option for loss "
                                      f"'{name}'. Did you mean 'strength'? Accepted: strength.")


def test_a_declared_options_model_adds_its_limits(plugin_host: PluginHost) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe("gatys", ["losses.1={name: modelled, strength: 11}"], host=plugin_host)
    assert info.value.problems == ["--set: losses[1].strength: must be <= 10.0, got 11"]


def test_options_read_from_a_signature() -> None:
    model = options_from_signature(strength_loss, reserved=("layers",))
    assert set(model.model_fields) == {"strength"}
    assert model.model_fields["strength"].default == 1.0
    assert model.model_config["extra"] == "forbid"
    assert options_from_signature(lambda **kw: None).model_config["extra"] == "allow"


def test_a_lazy_factory_is_imported_when_first_built(plugin_host: PluginHost) -> None:
    entry = plugin_host.losses.entry("lazy")
    assert entry.target == f"{__name__}:strength_loss"
    assert "factory" not in entry.__dict__  # not imported by registering or validating
    load_recipe("gatys", ["losses.1.name=lazy"], host=plugin_host)
    assert "factory" not in entry.__dict__
    assert entry.factory is strength_loss


def test_a_lazy_factory_that_cannot_be_imported_names_the_plugin() -> None:
    from nstkit.errors import PluginError

    class Broken:
        @hookimpl
        def register_losses(self, register) -> None:
            register("gone", "nstkit_no_such_module:Loss")

    host = PluginHost([Broken()], autoload=False)
    with pytest.raises(PluginError, match=r"plugin '.*': 'gone': cannot import "
                                          r"nstkit_no_such_module:Loss: ModuleNotFoundError"):
        host.losses.get("gone")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """The recipe JSON Schema of a host with the built-ins and :class:`_Plugin`."""
    schema = recipe_json_schema(PluginHost([_Plugin()], autoload=False))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


class TestJsonSchema:
    @pytest.mark.parametrize("name", sorted(builtin_recipes()))
    def test_every_builtin_recipe_file_validates(self, validator, name: str) -> None:
        data = parse((RECIPES / f"{name}.yaml").read_text("utf-8"))
        assert list(validator.iter_errors(data)) == []

    @pytest.mark.parametrize("data", [
        {"iteration": 10},                                     # misspelt key
        {"size": "big"},                                       # wrong type
        {"losses": [{"name": "gram", "shfit": 1}]},            # misspelt option
        {"losses": [{"name": "modelled", "strength": 20}]},    # a plugin option's limit
        {"optimizer": {"name": "adam", "lr": "x"}},
        {"precision": "fp16"},
        {"version": 2},
    ])
    def test_mistakes_are_rejected(self, validator, data: dict) -> None:
        assert list(validator.iter_errors(data))

    def test_the_cli_prints_it(self) -> None:
        from nstkit.cli import app

        result = CliRunner().invoke(app, ["recipes", "schema"])
        assert result.exit_code == 0, result.output
        schema = json.loads(result.output)
        assert schema["title"] == "nstkit recipe"
        titles = {d.get("title") for d in schema["$defs"].values()}
        assert {"loss gram", "loss tv", "optimizer lbfgs", "extractor vgg19"} <= titles


def test_a_plugin_whose_factory_cannot_be_imported_breaks_only_its_own_recipes() -> None:
    class Broken:
        @hookimpl
        def register_losses(self, register) -> None:
            register("gone", "nstkit_no_such_module:Loss")  # no options model: read on use

    host = PluginHost([Broken()], autoload=False)
    assert load_recipe("gatys", host=host).config.losses[1].name == "gram"
    assert "loss gone" in json.dumps(recipe_json_schema(host))


def test_the_schema_describes_a_signature_with_a_class_annotation() -> None:
    def shifted(*, layers: object = None, device: torch.device | None = None,
                amount: float = 1.0) -> ContentLoss:
        return ContentLoss(layers)

    class Plugin:
        @hookimpl
        def register_losses(self, register) -> None:
            register("shifted", shifted)

    host = PluginHost([Plugin()], autoload=False)
    schema = recipe_json_schema(host)
    [term] = [d for d in schema["$defs"].values() if d.get("title") == "loss shifted"]
    assert {"device", "amount"} <= set(term["properties"])
    with pytest.raises(RecipeError, match=r"losses\[1\]\.amount: must be a number"):
        load_recipe("gatys", ["losses.1={name: shifted, amount: x}"], host=host)


@pytest.mark.parametrize(("item", "message"), [
    ("losses.0=5", "--set: losses[0]: must be a mapping, got 5"),
    ("optimizer=adam", "--set: optimizer: must be a mapping, got 'adam'"),
    ("extractor.name=[1]", "--set: extractor.name: must be a registered extractor name, got [1]"),
    ("losses.0.layers=relu1_1", "--set: losses[0].layers: must be a list of layer names, a "
     "mapping of layer name to weight, or a schedule, got 'relu1_1'"),
])
def test_values_of_the_wrong_shape_are_named_where_they_are(item: str, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe("gatys", [item], host=PluginHost(autoload=False))
    assert info.value.problems == [message]


class TestStylizeKeywords:
    host = PluginHost(autoload=False)

    def test_none_means_not_given_as_in_the_old_signature(self) -> None:
        config = apply_overrides(StylizeConfig(), {"losses": None, "optimizer_options": None,
                                                   "size": 64}, self.host)
        assert config.losses == StylizeConfig().losses
        assert config.size == 64

    def test_a_component_may_be_given_as_a_mapping(self) -> None:
        config = apply_overrides(StylizeConfig(), {"optimizer": {"name": "adam", "lr": 0.1}},
                                 self.host)
        assert (config.optimizer.name, config.iterations) == ("adam", 500)
        assert config.optimizer.options == {"lr": 0.1}

    def test_gatys_shorthands_refuse_a_config_with_losses_of_its_own(self) -> None:
        improved = load_recipe("improved", host=self.host).config
        with pytest.raises(ConfigError, match="style_weight set the Gatys terms, but this "
                                              "config has losses of its own"):
            apply_overrides(improved, {"style_weight": 1e-2}, self.host)

    def test_a_recipe_instead_of_its_config_is_a_clear_error(self) -> None:
        with pytest.raises(TypeError, match=r"config must be a StylizeConfig \(a recipe's "
                                            r"\.config\), got Recipe"):
            apply_overrides(load_recipe("gatys", host=self.host), {}, self.host)


def test_a_built_extractor_brings_its_own_layers_and_is_recorded() -> None:
    import nstkit
    from nstkit.testing import TinyExtractor, tiny_images

    images = tiny_images(16)
    extractor = TinyExtractor()
    layer = extractor.layer_names[1]
    result = nstkit.stylize(images.content, images.styles[0], extractor=extractor,
                            content_layers=[layer], style_layers=[layer], size=16,
                            iterations=1, init=images.content, device="cpu",
                            host=PluginHost(autoload=False))
    assert result.settings["extractor"] == {"name": "TinyExtractor"}
    assert result.settings["init"] == "image"


@pytest.mark.parametrize(("kind", "name"), [
    (kind, entry.name) for kind in ("extractor", "loss", "optimizer")
    for entry in PluginHost(autoload=False).registry(kind)])
def test_builtin_options_models_match_their_factories(kind: str, name: str) -> None:
    """A built-in declares its options for validation without importing torch; the model's
    names and defaults must be the factory's, or recipes and the Python API would differ."""
    import inspect

    entry = PluginHost(autoload=False).registry(kind).entry(name)
    params = list(inspect.signature(entry.factory).parameters.values())
    if kind == "optimizer":
        params = params[1:]  # the image being optimised
    if kind == "extractor":  # vgg16/vgg19(**options) -> VGGExtractor(arch, *, ...)
        from nstkit.extractors.vgg import VGGExtractor

        params = list(inspect.signature(VGGExtractor).parameters.values())[1:]
    declared = {key: field.default for key, field in entry.options.model_fields.items()
                if key != "layers"}
    found = {p.name: p.default for p in params if p.name != "layers"}
    assert declared == found


@pytest.mark.parametrize(("value", "problem"), [
    (True, "tiling: must be auto, null or a mapping {tile, overlap, style}, got true"),
    (7, "tiling: must be auto, null or a mapping {tile, overlap, style}, got 7"),
    ({"tile": 64, "overlap": 32},
     "tiling: tile (64) less twice the overlap (32) must leave at least 32 px"),
    ({"tile": 512, "style": "globl"}, "tiling.style: must be 'global' or 'local'; got 'globl'"),
    ({"size": 512}, "tiling.size: unknown key. Allowed: tile, overlap, style."),
    ({"tile": 32}, "tiling.tile: must be >= 64, got 32"),
])
def test_tiling_problems_are_one_line_each(value, problem) -> None:
    data = {**recipe_defaults(), "tiling": value}
    assert validate_config(data, make_host(), lambda path: "x.yaml") == (
        None, [f"x.yaml: {problem}"])


def test_tiling_values() -> None:
    assert StylizeConfig(tiling="auto").tiling == "auto"
    tiles = StylizeConfig(tiling={"tile": 256}).tiling
    assert (tiles.tile, tiles.overlap, tiles.style) == (256, 64, "global")
    assert StylizeConfig().tiling is None
