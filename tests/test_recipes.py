"""Recipes: loading, extends, --set, and validation messages word for word."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from nstkit.errors import RecipeError
from nstkit.hookspecs import hookimpl
from nstkit.layers import resolve_layer_spec
from nstkit.losses import ContentLoss
from nstkit.plugins import PluginHost
from nstkit.recipe import builtin_recipes, load_recipe
from nstkit.recipe.loader import apply_set, parse_set
from nstkit.stylisation import stage_plan

BUILTINS = sorted(builtin_recipes())


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def problems(ref: str | Path, sets: tuple[str, ...] = (), host: PluginHost | None = None
             ) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(ref, sets, host=host)
    return info.value.problems


def test_every_seed_system_is_a_builtin_recipe() -> None:
    assert set(BUILTINS) >= {"gatys", "improved", "keras-tutorial", "cnam", "tf-adam",
                             "fastai-vgg16", "content-reconstruction", "style-reconstruction",
                             "colour-preserving", "preview"}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_recipe_validates_and_names_its_source(name: str) -> None:
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe.description
    header = builtin_recipes()[name].read_text("utf-8").split("version:")[0]
    assert f"# Run: nstkit run {name} " in header  # the command to run it


def test_gatys_is_the_paper_setup() -> None:
    data = load_recipe("gatys").data
    assert data["extractor"] == {"name": "vgg19", "pooling": "max", "weights": "original"}
    assert data["losses"][0]["layers"] == ["relu4_2"]
    assert data["losses"][1]["layers"] == [f"relu{i}_1" for i in range(1, 6)]
    assert data["optimizer"]["name"] == "lbfgs"


def test_improved_weights_fall_for_style_and_rise_for_content() -> None:
    content, style = load_recipe("improved").config.losses
    assert style.name == "shifted_gram"
    style_w = list(resolve_layer_spec(style.layers.model_dump()).values())
    content_w = list(resolve_layer_spec(content.layers.model_dump()).values())
    assert len(style_w) == 16
    assert style_w == pytest.approx([2.0 ** (15 - i) / (2 ** 16 - 1) for i in range(16)])
    assert all(b == pytest.approx(2 * a) for a, b in itertools.pairwise(content_w))
    assert sum(content_w) == pytest.approx(1.0)


def test_extends_changes_only_what_the_child_states(tmp_path: Path) -> None:
    child = write(tmp_path, "child.yaml", "extends: gatys\nsize: 128\noptimizer: {lr: 0.5}\n")
    recipe, base = load_recipe(child), load_recipe("gatys")
    assert recipe.data["size"] == 128
    assert recipe.data["optimizer"] == {**base.data["optimizer"], "lr": 0.5}
    assert recipe.data["losses"] == base.data["losses"]
    assert recipe.name == "child"
    assert recipe.description == ""  # not inherited
    assert recipe.chain == ["gatys.yaml (built-in)", str(child)]


def test_set_overrides_after_extends_and_file_sets(tmp_path: Path) -> None:
    child = write(tmp_path, "c.yaml", "extends: gatys\nset:\n  losses.1.weight: 0.5\n")
    recipe = load_recipe(child, ["seed=7", "losses.0.layers=[relu2_1]", "losses.2.name=tv"])
    assert recipe.data["losses"][1]["weight"] == 0.5
    assert recipe.data["losses"][0]["layers"] == ["relu2_1"]
    assert recipe.data["losses"][2] == {"name": "tv"}
    assert recipe.data["seed"] == 7


def test_parse_set_reads_values_as_yaml_with_exponent_floats() -> None:
    assert parse_set("losses.1.weight=1e-2") == (["losses", 1, "weight"], 0.01)
    assert parse_set("preserve_colour=null") == (["preserve_colour"], None)
    assert parse_set("extractor.pooling=avg") == (["extractor", "pooling"], "avg")
    with pytest.raises(RecipeError, match=r"--set size: expected key.path=value"):
        parse_set("size")


def test_apply_set_refuses_an_index_past_the_end() -> None:
    data = {"losses": [{"name": "content"}]}
    with pytest.raises(RecipeError, match=r"losses\[5\]: no item 5 in a list of 1"):
        apply_set(data, ["losses", 5, "weight"], 1.0, "--set")


def test_the_hash_follows_meaningful_changes_only() -> None:
    base = load_recipe("gatys")
    assert load_recipe("gatys", ["description=other words"]).hash == base.hash
    assert load_recipe("gatys", ["size=256"]).hash != base.hash
    assert load_recipe("gatys", ["losses.1.weight=0.002"]).hash != base.hash
    assert load_recipe("gatys", ["precision=bf16"]).hash != base.hash
    assert load_recipe("gatys", ["precision=fp32"]).hash == base.hash


def test_precision_reaches_stylize() -> None:
    assert load_recipe("gatys").config.precision == "fp32"
    assert load_recipe("gatys", ["precision=bf16"]).config.precision == "bf16"


def test_every_problem_is_reported_with_file_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", """\
version: 1
size: big
style_scale: -1
extractor: {name: vgg19, pooling: min}
losses:
  - {name: content, weight: 1, layers: [relu4_2]}
  - {name: gram, weight: abc, layers: [relu9_1]}
  - {name: gramm}
optimizer: {name: lbfgs, iterations: 1.5, momentum: 0.9}
output: {format: gif}
iteration: 5
precision: fp16
""")
    found = problems(path)
    assert f"{path}: losses[1].weight: must be a number, got 'abc'" in found
    assert f"{path}: size: must be an integer or null, got 'big'" in found
    assert f"{path}: style_scale: must be > 0, got -1" in found
    assert f"{path}: optimizer.iterations: must be an integer, got 1.5" in found
    assert f"{path}: output.format: must be 'png', 'jpg', 'webp' or 'tiff'; got 'gif'" in found
    assert (f"{path}: iteration: unknown key. Did you mean 'optimizer.iterations'? Allowed: "
            "version, name, description, extractor, size, style_scale, seed, init, noise_scale, "
            "losses, preserve_colour, optimizer, ema, strength, multiscale, precision, tiling, "
            "output, styles, regions, masks."
            in found)
    assert (f"{path}: losses[2].name: unknown loss 'gramm'. Did you mean 'gram'? Available: "
            "colour, content, gram, histogram, keep, mean_std, shifted_gram, sliced_wasserstein, "
            "tv, wasserstein." in found)
    assert (f"{path}: optimizer.momentum: unknown option for optimizer 'lbfgs'. Accepted: "
            "history_size, line_search, lr." in found)
    assert f"{path}: extractor.pooling: must be 'max' or 'avg'; got 'min'" in found
    assert f"{path}: precision: must be 'fp32' or 'bf16'; got 'fp16'" in found
    # the unknown layer of a term with another problem is reported in the same run
    assert any(p.startswith(f"{path}: losses[1].layers[0]: unknown layer 'relu9_1'")
               for p in found)
    assert len(found) == 11, found


def test_unknown_layer_is_reported_with_the_valid_names(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "extends: gatys\nlosses:\n  - {name: gram, layers: "
                                      "[relu1_1, relu9_1]}\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}: losses[0].layers[1]: unknown layer 'relu9_1' for vgg19.")
    assert "Valid layers: conv1_1, relu1_1," in problem


def test_problems_name_the_file_that_gave_the_key(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", "losses:\n  - {name: content, weight: -2}\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nseed: -1\n")
    found = problems(child, ("noise_scale=2",))
    assert found == [
        f"{child}: seed: must be >= 0, got -1",
        "--set: noise_scale: must be <= 0.5, got 2",
        f"{base}: losses[0].weight: must be >= 0, got -2",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("size: [1, 2\n",
     "invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
    ("- a\n- b\n", "a recipe must be a mapping of keys, got ['a', 'b']"),
    ("x: !!python/object/apply:os.system [echo hi]\n", "invalid YAML at line 1, column 4: "
     "could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("version: 2\n", "version: unsupported version 2; this nstkit reads version 1"),
    ("losses: []\n", "losses: must be a non-empty list of loss terms, got []"),
    ("losses: [{name: content, weight: 0}]\n", "losses: every term has weight 0; nothing to "
     "optimise"),
    ("losses: [{name: gram, weight: .nan}]\n", "losses[0].weight: must be a finite number, "
     "got nan"),
    ("losses: [{name: gram, shfit: 1}]\n", "losses[0].shfit: unknown option for loss 'gram'. "
     "Did you mean 'shift'? Accepted: shift."),
    ("losses: [{name: tv, exponent: 2, layers: [relu1_1]}]\n",
     "losses[0].layers: this term reads the image, not extractor layers; remove 'layers'"),
    ("extractor: {name: vgg19, weights: /no/such.pth}\n", "extractor.weights: must be one of "
     "original, torchvision, random or a weights file; no file '/no/such.pth'"),
    ("multiscale: {scales: [1.0, 0.5], iterations: [0.5, 0.5]}\n",
     "multiscale.scales: must rise strictly and end at 1.0, got [1.0, 0.5]"),
    ("multiscale: {scales: [0.5, 1.0], iterations: [1]}\n",
     "multiscale.iterations: needs one share per scale (2), got 1"),
    ("init: /no/such.png\n", "init: must be one of content, noise, style or an image file; "
     "no file '/no/such.png'"),
    ("name: ../escape\n", "name: must be letters, digits, '.', '_' or '-', got '../escape'"),
    ("extends: [a]\n", "extends: must be a recipe name or path, got ['a']"),
    ("size: " + "9" * 400 + "\n", "size: is out of range (|x| > 1e+30), got 99999999999999999999"),
    ("losses: [{name: gram, layers: {schedule: geometric, ratio: 5e3, layers: [relu1_1]}}]\n",
     "losses[0].layers.ratio: must be <= 1000.0, got 5000.0"),
    ("losses: [{name: gram, 5: 1}]\n", "losses[0]: keys must be strings, got 5"),
    ("optimizer: {name: adam, iterations: 3, lr: abc}\n",
     "optimizer.lr: must be a number, got 'abc'"),
    ("version: true\n", "version: unsupported version true; this nstkit reads version 1"),
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
     "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
     "more than 10000 values (YAML aliases expanded); not a recipe"),
])
def test_single_problem_messages(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "r.yaml", text)
    found = problems(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}: {message}"), found[0]


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "extends: b.yaml\n")
    b = write(tmp_path, "b.yaml", "extends: a.yaml\n")
    assert problems(a) == [f"{a}: extends: cycle {a} -> {b} -> {a}"]


def test_a_cycle_through_dot_dot_is_found(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    loop = write(tmp_path / "sub", "loop.yaml", "extends: ../sub/loop.yaml\n")
    [problem] = problems(loop)
    assert problem.endswith(f"extends: cycle {loop} -> {tmp_path}/sub/../sub/loop.yaml")


@pytest.mark.parametrize(("item", "message"), [
    ("losses.2.weight=1", "--set: losses[2].name: is required"),
    ("size.x=1", "--set: size: cannot set a key inside 512"),
    ("losses.\u00b2=1", "--set: losses.\u00b2: no item '\u00b2' in a list of 2 (use 0..2)"),
])
def test_set_problems_are_blamed_on_set(item: str, message: str) -> None:
    assert problems("gatys", (item,)) == [message]


def test_unknown_recipe_name_lists_the_builtins() -> None:
    [problem] = problems("gatsy")
    assert problem.startswith("gatsy: no built-in recipe of that name and no such file")
    assert "gatys" in problem


def test_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    assert problems(missing) == [f"{missing}: cannot read the recipe: No such file or directory"]


class _ThirdPartyLoss:
    @hookimpl
    def register_losses(self, register) -> None:
        register("my_loss", ContentLoss)


def test_a_plugin_loss_is_valid_once_registered(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "losses: [{name: my_loss, layers: [relu3_1]}]\n")
    assert "unknown loss 'my_loss'" in problems(path, host=PluginHost(autoload=False))[0]
    host = PluginHost([_ThirdPartyLoss()], autoload=False)
    recipe = load_recipe(path, host=host)
    assert recipe.config.losses[0].name == "my_loss"


def test_layer_specs_resolve_to_weights() -> None:
    assert resolve_layer_spec(["a", "b"]) == ["a", "b"]
    assert resolve_layer_spec({"a": 1, "b": 3}) == {"a": 1.0, "b": 3.0}
    assert resolve_layer_spec({"schedule": "equal", "layers": ["a", "b"]}) == {"a": .5, "b": .5}
    assert resolve_layer_spec({"schedule": "geometric", "layers": ["a", "b", "c"],
                               "ratio": 3}) == pytest.approx({"a": 9 / 13, "b": 3 / 13,
                                                              "c": 1 / 13})


@pytest.mark.parametrize(("iterations", "multiscale", "expected"), [
    (10, None, [(1.0, 10)]),
    (60, [(0.5, 0.6), (1.0, 0.4)], [(0.5, 36), (1.0, 24)]),
    (10, [(0.25, 1), (0.5, 1), (1.0, 1)], [(0.25, 3), (0.5, 4), (1.0, 3)]),
])
def test_stage_plan_splits_the_iterations(iterations, multiscale, expected) -> None:
    plan = stage_plan(iterations, multiscale)
    assert plan == expected
    assert sum(steps for _, steps in plan) == iterations


@pytest.mark.slow
def test_fast_recipe_is_gatys_coarse_to_fine_and_lowers_the_gatys_loss(tiny) -> None:
    import nstkit

    fast = load_recipe("fast", ["size=64"]).config
    gatys = load_recipe("gatys", ["size=64"]).config
    assert fast.losses == gatys.losses
    assert fast.multiscale.stages() == [(0.25, 100), (0.5, 50), (1.0, 80)]
    assert fast.multiscale.detail is True
    assert fast.optimizer.options == {"line_search": None}
    content, style = tiny / "content" / "coffee.png", tiny / "style" / "starry_night.png"
    result = nstkit.stylize(content, style, fast, device="cpu", iterations=23)
    # coffee.png is 64x43 px: its 1/4 stage (16x11) is too small for relu5_1, so the run starts
    # at 1/2 with the 1/4 stage's steps
    assert result.stages == [[0.5, 15], [1.0, 8]]

    def gatys_loss(init) -> float:
        return nstkit.stylize(content, style, gatys, device="cpu", iterations=0,
                              init=init).history["total"][0]

    assert gatys_loss(result.image) < gatys_loss("content") / 4  # measured 18x
