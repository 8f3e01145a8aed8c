"""``strength``: the style terms' weights scaled, declared per loss class, checked, recorded."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

import nstkit
from nstkit.cli.options import overrides
from nstkit.compare import plan_variants
from nstkit.components import build_terms
from nstkit.config import StylizeConfig
from nstkit.errors import PluginError, RecipeError
from nstkit.hookspecs import hookimpl
from nstkit.losses import GramLoss, LossTerm
from nstkit.plugins import PluginHost
from nstkit.recipe import load_recipe
from nstkit.testing import TinyExtractor, check_loss, tiny_images

SPECS = [{"name": "content", "weight": 1.0}, {"name": "gram", "weight": 1e-3},
         {"name": "tv", "weight": 5.0}, {"name": "wasserstein", "weight": 2.0},
         {"name": "colour", "weight": 0.5}]


class _Undeclared(LossTerm):
    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return image.mean()


class _Liar(GramLoss):
    reads_style = False  # but prepare reads the style features


class _Plugin:
    @hookimpl
    def register_losses(self, register) -> None:
        register("undeclared", _Undeclared)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost(autoload=False)
    host.add(_Plugin(), "undeclared-plugin")
    return host


@pytest.mark.parametrize("strength", [0.5, 1.0, 2.0, 7.25])
def test_only_the_style_terms_are_scaled_exactly(host: PluginHost, strength: float) -> None:
    weights = {t.name: t.weight for t in build_terms(host, SPECS, strength)}
    assert weights == {"content": 1.0, "gram": 1e-3 * strength, "tv": 5.0,
                       "wasserstein": 2.0 * strength, "colour": 0.5}


def test_every_builtin_loss_declares_what_it_reads(host: PluginHost) -> None:
    """Declared on every built-in; check_loss holds each declaration to what prepare reads."""
    for name in host.losses.names():
        module = build_terms(host, [{"name": name}])[0].module
        if name != "undeclared":
            assert type(module).reads_style is not None, name


@pytest.mark.parametrize("factory", [GramLoss, nstkit.losses.ContentLoss])
def test_check_loss_accepts_true_declarations(factory) -> None:
    check_loss(factory, gradcheck=False)


def test_check_loss_catches_a_false_declaration() -> None:
    with pytest.raises(AssertionError, match="reads_style is False, but prepare reads"):
        check_loss(_Liar, gradcheck=False)


def test_an_undeclared_term_refuses_strength_only(host: PluginHost) -> None:
    specs = [{"name": "content"}, {"name": "undeclared"}]
    assert [t.weight for t in build_terms(host, specs, 1.0)] == [1.0, 1.0]
    with pytest.raises(PluginError, match=r"does not say whether it does: set reads_style"):
        build_terms(host, specs, 2.0)


def test_strength_is_a_config_key_the_cli_sets_and_the_hash_sees() -> None:
    plain = load_recipe("gatys")
    strong = load_recipe("gatys", overrides(None, strength=2.0))
    assert strong.config.strength == 2.0
    assert plain.config.strength == 1.0
    assert strong.hash != plain.hash
    assert strong.data["strength"] == 2.0
    with pytest.raises(RecipeError, match="strength: must be > 0, got 0"):
        load_recipe("gatys", ["strength=0"])


def test_stylize_with_strength_equals_the_scaled_recipe() -> None:
    """strength=2 on gatys is the same job as its gram weight doubled: the same image."""
    images = tiny_images(size=24)
    config = StylizeConfig(size=24, optimizer={"name": "lbfgs", "iterations": 3},
                           losses=[{"name": "content"}, {"name": "gram", "weight": 1.0}])
    content, gram = config.losses
    doubled = config.model_copy(update={"losses": [
        content, gram.model_copy(update={"weight": 2 * gram.weight})]})
    host = PluginHost(autoload=False)
    run = [nstkit.stylize(images.content, images.styles[0], c, extractor=TinyExtractor(),
                          host=host, device="cpu", **extra).image
           for c, extra in ((config, {"strength": 2.0}), (doubled, {}))]
    torch.testing.assert_close(run[0], run[1], rtol=0, atol=0)
    weak = nstkit.stylize(images.content, images.styles[0], config, extractor=TinyExtractor(),
                          host=host, device="cpu", strength=0.5).image
    assert (weak - run[0]).abs().max() > 1e-3  # and strength does change the result


def test_compare_sweeps_strength() -> None:
    variants = plan_variants(["fast"], [], "strength=0.5,1,2,4",
                             lambda ref, sets: load_recipe(ref, sets))
    assert [v.recipe.config.strength for v in variants] == [0.5, 1.0, 2.0, 4.0]
    assert len({v.recipe.hash for v in variants}) == 4
    assert variants[0].label == "fast strength=0.5"


@pytest.mark.slow
def test_run_strength_is_recorded_and_resumes_by_it(tmp_path, run_tiny, records) -> None:
    out = tmp_path / "out"
    assert run_tiny(out, "--strength", "2").exit_code == 0
    found = records(out)
    assert [r["recipe_data"]["strength"] for r in found] == [2.0] * 4
    again = run_tiny(out, "--strength", "2")
    assert "4 job(s) already done" in again.output
    assert run_tiny(out, "--strength", "0.5").exit_code == 0  # another strength: redone
    assert [r["recipe_data"]["strength"] for r in records(out)][4:] == [0.5] * 4

