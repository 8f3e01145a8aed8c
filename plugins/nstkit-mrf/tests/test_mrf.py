"""Tests of the nstkit-mrf plugin: the MRF loss's numbers, its contract, and end-to-end runs."""

from __future__ import annotations

import inspect
from importlib import metadata
from pathlib import Path

import pytest
import torch
import yaml

nstkit_mrf = pytest.importorskip(
    "nstkit_mrf", reason="nstkit-mrf is not installed: pip install -e plugins/nstkit-mrf")

from nstkit_mrf import MRFLoss, match_patches, mrf_loss, style_patches  # noqa: E402
from nstkit_mrf import plugin as mrf_plugin  # noqa: E402
from nstkit_mrf.options import MRFOptions  # noqa: E402

import nstkit  # noqa: E402
from nstkit.errors import RecipeError  # noqa: E402
from nstkit.losses import Targets  # noqa: E402
from nstkit.recipe import load_recipe  # noqa: E402
from nstkit.testing import (  # noqa: E402
    check_loss,
    make_host,
    modules_after,
    sample_images,
    stylize_tiny,
    tiny_images,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small images: one thread is fast enough, and is not stalled (100x in our runs) when
    other processes keep the cores busy, as several threads are."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _targets(*styles: dict[str, torch.Tensor], blend: list[float] | None = None) -> Targets:
    blend = blend or [1.0 / len(styles)] * len(styles)
    return Targets(torch.zeros(1, 3, 4, 4), {}, [], list(styles), blend)


def _reference(features: torch.Tensor, style: torch.Tensor, k: int, style_stride: int,
               image_stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Loops: the NCC-best style patch of every image patch, and the mean squared distance."""
    def patches(x: torch.Tensor, stride: int) -> list[torch.Tensor]:
        return [x[:, i:i + k, j:j + k].flatten()
                for i in range(0, x.shape[-2] - k + 1, stride)
                for j in range(0, x.shape[-1] - k + 1, stride)]

    bank = patches(style[0], style_stride)
    total, count, indices = torch.zeros((), dtype=features.dtype), 0, []
    for item in features:
        row = []
        for p in patches(item, image_stride):
            ncc = torch.stack([p @ q / (p.norm() * q.norm()) for q in bank])
            best = int(ncc.argmax())
            row.append(best)
            total = total + ((p - bank[best]) ** 2).sum()
            count += p.numel()
        indices.append(row)
    return torch.tensor(indices), total / count


class TestMRFLossNumbers:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_zero_when_the_image_features_are_the_style_features(self, dtype) -> None:
        features = _random(2, 8, 6, 7).to(dtype)[:1]
        assert mrf_loss(features, style_patches([features])).item() == 0.0
        term = MRFLoss(layers=["relu3_1"])
        term.prepare(_targets({"relu3_1": features}))
        assert term(torch.zeros(1, 3, 8, 8), {"relu3_1": features}).item() == 0.0

    def test_known_case_matches_by_normalised_cross_correlation(self) -> None:
        left = torch.ones(3, 3, dtype=torch.float64)  # parallel to the image patch: NCC 1
        right = torch.full((3, 3), 2.0, dtype=torch.float64)
        right[1, 1] = 0.0  # Euclidean distance 2 to the image patch (left: 3), NCC 0.94
        style = torch.cat([left, right], dim=1).view(1, 1, 3, 6)
        bank = style_patches([style], 3, stride=3)
        assert bank.shape == (2, 1, 3, 3)
        image = torch.full((1, 1, 3, 3), 2.0, dtype=torch.float64)
        assert match_patches(image, bank).tolist() == [[0]]
        assert mrf_loss(image, bank).item() == pytest.approx(1.0)  # mean((2 - 1)^2)

    @pytest.mark.parametrize(("style_stride", "image_stride"), [(1, 1), (2, 1), (1, 2)])
    def test_equals_an_explicit_loop_reference(self, style_stride, image_stride) -> None:
        features, style = _random(2, 3, 6, 5, seed=1), _random(1, 3, 5, 7, seed=2)
        bank = style_patches([style], 3, stride=style_stride)
        indices, expected = _reference(features, style, 3, style_stride, image_stride)
        got = match_patches(features, bank, stride=image_stride)
        assert torch.equal(got, indices)
        assert mrf_loss(features, bank, stride=image_stride).item() == pytest.approx(
            expected.item(), rel=1e-12)

    def test_chunked_matching_equals_one_chunk(self) -> None:
        features, style = _random(1, 4, 7, 7, seed=3), _random(1, 4, 9, 8, seed=4)
        bank = style_patches([style])
        whole = match_patches(features, bank, chunk_size=10_000)
        for chunk in (1, 5, 17):
            assert torch.equal(match_patches(features, bank, chunk_size=chunk), whole)

    def test_gradcheck_float64(self) -> None:
        bank = style_patches([_random(1, 2, 5, 6, seed=5)])
        features = _random(1, 2, 4, 5, seed=6).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda f: mrf_loss(f, bank), (features,))

    def test_optimising_the_features_lowers_it(self) -> None:
        # overlapping patches compete for matches, so the minimum is not 0 (here 0.31 x start)
        bank = style_patches([_random(1, 4, 8, 8, seed=10)])
        features = _random(1, 4, 6, 6, seed=11).requires_grad_(True)
        optimizer = torch.optim.Adam([features], lr=0.02)
        initial = mrf_loss(features, bank).item()
        for _ in range(100):
            optimizer.zero_grad()
            loss = mrf_loss(features, bank)
            loss.backward()
            optimizer.step()
        assert mrf_loss(features, bank).item() < 0.5 * initial

    def test_matching_carries_no_gradient(self) -> None:
        bank = style_patches([_random(1, 2, 5, 6, seed=5)])
        features = _random(1, 2, 4, 5, seed=6).requires_grad_(True)
        assert not match_patches(features, bank).requires_grad
        assert mrf_loss(features, bank).requires_grad

    def test_patches_of_all_styles_with_nonzero_blend_are_pooled(self) -> None:
        a, b, c = (_random(1, 2, 4, 4, seed=s) for s in (7, 8, 9))
        term = MRFLoss(layers=["relu3_1"])
        term.prepare(_targets({"relu3_1": a}, {"relu3_1": b}, {"relu3_1": c},
                              blend=[0.5, 0.0, 0.5]))
        assert torch.equal(term.patches["relu3_1"], torch.cat([style_patches([a]),
                                                               style_patches([c])]))

    def test_too_small_features_are_reported(self) -> None:
        with pytest.raises(ValueError, match="style features are 2x5, smaller than the 3x3"):
            style_patches([torch.rand(1, 2, 2, 5)])
        with pytest.raises(ValueError, match="features are 2x2, smaller than the 3x3"):
            mrf_loss(torch.rand(1, 2, 2, 2), style_patches([torch.rand(1, 2, 4, 4)]))

    def test_bad_options_are_reported(self) -> None:
        with pytest.raises(ValueError, match="style_stride must be a positive integer, got 0"):
            MRFLoss(style_stride=0)
        with pytest.raises(RuntimeError, match=r"prepare\(\) must be called"):
            MRFLoss()(torch.rand(1, 3, 8, 8), {})

    def test_default_layers_are_relu3_1_and_relu4_1(self) -> None:
        assert MRFLoss().layers == {"relu3_1": 0.5, "relu4_1": 0.5}


class TestPlugin:
    def test_keeps_the_loss_contract(self) -> None:
        check_loss(MRFLoss)
        check_loss(MRFLoss, layers={"relu2_1": 1.0}, options={"style_stride": 2,
                                                               "image_stride": 2})

    def test_registers_mrf(self) -> None:
        entry = make_host(mrf_plugin).losses.entry("mrf")
        assert entry.target == "nstkit_mrf.loss:MRFLoss"  # lazy: imported when first built
        assert entry.options is MRFOptions
        assert entry.factory is MRFLoss
        assert entry.plugin == "nstkit_mrf.plugin"

    def test_entry_point_is_installed(self) -> None:
        eps = {ep.name: ep.value for ep in metadata.entry_points(group="nstkit")}
        assert eps.get("mrf") == "nstkit_mrf.plugin"

    def test_runs_end_to_end_on_the_tiny_extractor(self) -> None:
        result = stylize_tiny(make_host(mrf_plugin), iterations=4, init="noise",
                              losses=[{"name": "mrf"}])
        history = result.history["mrf"]
        assert len(history) == 5
        assert history[-1] < history[0]

    def test_stylize_with_random_vgg19_weights_lowers_it(self) -> None:
        images = tiny_images(32)
        result = nstkit.stylize(
            images.content, images.style, size=None, iterations=5, weights="random",
            losses=[{"name": "content"}, {"name": "mrf", "weight": 1e4}],
            host=make_host(mrf_plugin), device="cpu", seed=0)
        assert result.image.shape == (1, 3, 32, 32)
        assert set(result.history) == {"content", "mrf", "total"}
        assert result.history["mrf"][-1] < 0.7 * result.history["mrf"][0]

    @pytest.mark.slow
    def test_stylize_sample_images_with_the_original_weights(self, tmp_path: Path) -> None:
        images = sample_images(tmp_path)
        result = nstkit.stylize(
            images / "content" / "coffee.png", images / "style" / "starry_night.png",
            size=64, iterations=5, losses=[{"name": "content"}, {"name": "mrf", "weight": 1.0}],
            host=make_host(mrf_plugin), device="cpu", seed=0)
        assert result.history["mrf"][-1] < 0.9 * result.history["mrf"][0]
        assert result.history["total"][-1] < 0.9 * result.history["total"][0]


HEAVY = ("torch", "numpy", "scipy")


def _heavy_modules_after(code: str) -> list[str]:
    """Which of :data:`HEAVY` a fresh interpreter has imported after running ``code``."""
    return modules_after(code, HEAVY)


def _recipe(folder: Path, **options: object) -> Path:
    """A recipe file with an ``mrf`` term carrying ``options``."""
    losses = [{"name": "content", "weight": 1.0, "layers": ["relu4_2"]},
              {"name": "mrf", "weight": 10.0, "layers": ["relu3_1"], **options}]
    path = folder / "mrf.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "extends": "gatys", "losses": losses}),
                    encoding="utf-8")
    return path


class TestLazyRegistration:
    """nstkit imports the entry-point module at start-up: it must not import torch, and the
    options model it registers must say what :class:`MRFLoss` accepts."""

    @pytest.mark.slow
    def test_importing_the_entry_point_module_imports_no_torch(self) -> None:
        assert _heavy_modules_after("import nstkit_mrf.plugin") == []

    @pytest.mark.slow
    def test_validating_a_recipe_with_mrf_imports_no_torch(self, tmp_path: Path) -> None:
        code = ("import nstkit_mrf.plugin\nfrom nstkit.plugins import PluginHost\n"
                "from nstkit.recipe import load_recipe\n"
                "host = PluginHost(plugins=[nstkit_mrf.plugin], autoload=False)\n"
                f"load_recipe({str(_recipe(tmp_path, patch_size=5))!r}, host=host)")
        assert _heavy_modules_after(code) == []

    @pytest.mark.slow
    def test_the_loss_itself_is_imported_on_first_access(self) -> None:
        assert "torch" in _heavy_modules_after("import nstkit_mrf\nnstkit_mrf.MRFLoss")

    def test_the_options_model_mirrors_the_factory_signature(self) -> None:
        parameters = inspect.signature(MRFLoss).parameters
        defaults = {name: p.default for name, p in parameters.items() if name != "layers"}
        assert {name: f.default for name, f in MRFOptions.model_fields.items()} == defaults
        MRFOptions.model_validate(defaults)  # the defaults are within the declared limits

    def test_valid_options_load(self, tmp_path: Path) -> None:
        recipe = load_recipe(_recipe(tmp_path, patch_size=5, style_stride=2),
                             host=make_host(mrf_plugin))
        assert recipe.config.losses[1].options == {"patch_size": 5, "style_stride": 2}

    @pytest.mark.parametrize(("options", "message"), [
        ({"patch_size": 0}, "losses[1].patch_size: must be >= 1, got 0"),
        ({"style_stride": -2}, "losses[1].style_stride: must be >= 1, got -2"),
        ({"image_stride": 1.5}, "losses[1].image_stride: must be an integer, got 1.5"),
        ({"chunk_size": "big"}, "losses[1].chunk_size: must be an integer"),
        ({"patch_sise": 3}, "losses[1].patch_sise: unknown option for loss 'mrf'. "
                            "Did you mean 'patch_size'?"),
    ])
    def test_a_bad_option_is_reported_by_load_recipe(self, tmp_path: Path, options: dict,
                                                      message: str) -> None:
        with pytest.raises(RecipeError) as caught:
            load_recipe(_recipe(tmp_path, **options), host=make_host(mrf_plugin))
        [problem] = caught.value.problems
        assert problem.startswith(f"{tmp_path / 'mrf.yaml'}: {message}"), problem
