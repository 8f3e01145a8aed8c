"""Tests of the nstkit-scipy plugin: SciPy's L-BFGS-B behind nstkit's optimiser contract."""

from __future__ import annotations

import inspect
import itertools
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("scipy", reason="SciPy is not installed (pip install scipy)")
pytest.importorskip(
    "nstkit_scipy", reason="nstkit-scipy is not installed: pip install -e plugins/nstkit-scipy")

from nstkit_scipy import LBFGSB, plugin
from nstkit_scipy.options import LBFGSBOptions
from scipy.optimize import fmin_l_bfgs_b, rosen, rosen_der

import nstkit
from nstkit.errors import RecipeError
from nstkit.recipe import load_recipe
from nstkit.testing import (
    check_optimizer,
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



def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """``scipy.optimize.rosen`` written in torch, for a ``(n,)`` tensor."""
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def _run(param: torch.Tensor, loss_fn, steps: int, **options) -> tuple[LBFGSB, list[np.ndarray]]:
    """Drive the optimiser like nstkit's engine; returns it and every point evaluated."""
    opt = LBFGSB([param], **options)
    seen: list[np.ndarray] = []

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        seen.append(param.detach().numpy().copy())
        loss = loss_fn(param)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return opt, seen


def test_bursts_equal_scipy_called_directly() -> None:
    start = np.linspace(-0.5, 1.5, 6)
    x = start.copy()
    direct_calls = []
    for _ in range(3):  # the seeds' loop: fmin_l_bfgs_b again and again, maxfun per call
        x, value, info = fmin_l_bfgs_b(rosen, x, fprime=rosen_der, maxfun=7,
                                       bounds=[(-0.25, 0.75)] * x.size)
        direct_calls.append(info["funcalls"])
    param = torch.tensor(start, requires_grad=True)
    opt, _ = _run(param, _rosenbrock, 3, maxfun=7, bounds=(-0.25, 0.75))
    np.testing.assert_allclose(param.detach().numpy(), x, rtol=0, atol=1e-10)
    assert opt.info["loss"] == pytest.approx(value, rel=1e-10)
    assert opt.info["funcalls"] == direct_calls[-1]


def test_one_step_is_one_burst_of_about_maxfun_evaluations() -> None:
    param = torch.tensor(np.linspace(0.1, 0.9, 8), requires_grad=True)
    opt = LBFGSB([param], maxfun=5)
    counts = []
    for _ in range(3):
        calls = [0]

        def closure(calls=calls) -> torch.Tensor:
            calls[0] += 1
            opt.zero_grad(set_to_none=True)
            loss = _rosenbrock(param)
            loss.backward()
            return loss

        returned = opt.step(closure)
        counts.append(calls[0])
        assert calls[0] == opt.info["funcalls"]
    assert all(5 <= count <= 5 + 20 for count in counts), counts
    assert returned.item() > opt.info["loss"]  # the start of the burst, as torch.optim.LBFGS


def test_pixels_stay_inside_the_bounds_at_every_evaluation() -> None:
    target = torch.tensor([-0.5, 0.2, 0.8, 1.5], dtype=torch.float64)
    param = torch.full((4,), 0.5, dtype=torch.float64, requires_grad=True)
    _, seen = _run(param, lambda x: ((x - target) ** 2).sum(), 3)
    assert all(point.min() >= 0.0 and point.max() <= 1.0 for point in seen)
    assert param.detach().tolist() == pytest.approx([0.0, 0.2, 0.8, 1.0], abs=1e-8)


def test_bounds_none_is_unbounded() -> None:
    target = torch.tensor([-0.5, 1.5], dtype=torch.float64)
    param = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    _run(param, lambda x: ((x - target) ** 2).sum(), 2, bounds=None)
    assert param.detach().tolist() == pytest.approx([-0.5, 1.5], abs=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_images_keep_their_dtype_and_reach_the_minimum(dtype) -> None:
    target = torch.linspace(0.2, 0.8, 2 * 3 * 4 * 4, dtype=dtype).view(2, 3, 4, 4)
    param = torch.full_like(target, 0.5).requires_grad_(True)
    same = param
    _run(param, lambda x: ((x - target) ** 2).mean(), 2)
    assert param is same
    assert param.dtype == dtype
    assert param.requires_grad
    torch.testing.assert_close(param.detach(), target, atol=1e-4, rtol=0)


def test_keeps_the_optimizer_contract() -> None:
    check_optimizer(LBFGSB)
    check_optimizer(LBFGSB, options={"maxfun": 3, "m": 5, "factr": 1e10, "pgtol": 1e-8})


def test_bad_options_are_reported() -> None:
    with pytest.raises(ValueError, match="maxfun must be a positive integer, got 0"):
        LBFGSB([torch.zeros(2, requires_grad=True)], maxfun=0)
    with pytest.raises(ValueError, match=r"bounds must be \(low, high\) or None"):
        LBFGSB([torch.zeros(2, requires_grad=True)], bounds=(0, 1, 2))
    with pytest.raises(ValueError, match="needs a closure"):
        LBFGSB([torch.zeros(2, requires_grad=True)]).step()


def test_registers_scipy_lbfgsb() -> None:
    entry = make_host(plugin).optimizers.entry("scipy-lbfgsb")
    assert entry.target == "nstkit_scipy.optimizer:LBFGSB"  # lazy: imported when first built
    assert entry.options is LBFGSBOptions
    assert entry.factory is LBFGSB
    assert entry.plugin == "nstkit_scipy.plugin"


def test_entry_point_is_installed() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="nstkit")}
    assert eps.get("scipy") == "nstkit_scipy.plugin"


def test_stylize_on_the_tiny_extractor() -> None:
    result = stylize_tiny(make_host(plugin), iterations=3, optimizer="scipy-lbfgsb",
                          optimizer_options={"maxfun": 10})
    total = result.history["total"]
    assert len(total) == 4
    assert total[-1] < 0.5 * total[0]
    assert result.image.min() >= 0.0
    assert result.image.max() <= 1.0


def test_stylize_with_random_vgg19_weights() -> None:
    images = tiny_images(32)
    result = nstkit.stylize(
        images.content, images.style, size=None, iterations=2, weights="random",
        losses=[{"name": "content"}, {"name": "gram", "weight": 1e6}],
        optimizer="scipy-lbfgsb", optimizer_options={"maxfun": 10},
        host=make_host(plugin), device="cpu", seed=0)
    assert result.history["total"][-1] < 0.5 * result.history["total"][0]


@pytest.mark.slow
def test_seed_000_recipe_on_the_sample_images(tmp_path: Path) -> None:
    """The Keras tutorial's set-up (seed 000) at 64 px: content relu5_2, Gram style, TV^1.25."""
    images = sample_images(tmp_path)
    result = nstkit.stylize(
        images / "content" / "coffee.png", images / "style" / "starry_night.png",
        size=64, iterations=2, seed=0, host=make_host(plugin), device="cpu",
        losses=[{"name": "content", "weight": 0.025, "layers": ["block5_conv2"]},
                {"name": "gram", "weight": 1.0,
                 "layers": [f"block{b}_conv1" for b in range(1, 6)]},
                {"name": "tv", "weight": 1.0, "exponent": 2.5}],
        optimizer="scipy-lbfgsb", optimizer_options={"maxfun": 10})
    total = result.history["total"]
    assert total[-1] < 0.2 * total[0]
    assert all(later < earlier for earlier, later in itertools.pairwise(total))


# --- lazy registration: nstkit imports the entry-point module at start-up ----------------------
HEAVY = ("torch", "numpy", "scipy")


def _heavy_modules_after(code: str) -> list[str]:
    """Which of :data:`HEAVY` a fresh interpreter has imported after running ``code``."""
    return modules_after(code, HEAVY)


def _recipe(folder: Path, **options: object) -> Path:
    """A recipe file using ``scipy-lbfgsb`` with ``options``."""
    path = folder / "scipy.yaml"
    optimizer = {"name": "scipy-lbfgsb", "iterations": 2, **options}
    path.write_text(yaml.safe_dump({"version": 1, "extends": "gatys", "optimizer": optimizer}),
                    encoding="utf-8")
    return path


@pytest.mark.slow
def test_importing_the_entry_point_module_imports_no_torch_numpy_or_scipy() -> None:
    assert _heavy_modules_after("import nstkit_scipy.plugin") == []


@pytest.mark.slow
def test_validating_a_recipe_with_scipy_lbfgsb_imports_no_torch(tmp_path: Path) -> None:
    code = ("import nstkit_scipy.plugin\nfrom nstkit.plugins import PluginHost\n"
            "from nstkit.recipe import load_recipe\n"
            "host = PluginHost(plugins=[nstkit_scipy.plugin], autoload=False)\n"
            f"load_recipe({str(_recipe(tmp_path, maxfun=15))!r}, host=host)")
    assert _heavy_modules_after(code) == []


@pytest.mark.slow
def test_the_optimiser_itself_is_imported_on_first_access() -> None:
    assert _heavy_modules_after("import nstkit_scipy\nnstkit_scipy.LBFGSB") == sorted(HEAVY)


def test_the_options_model_mirrors_the_factory_signature() -> None:
    parameters = inspect.signature(LBFGSB).parameters
    defaults = {name: p.default for name, p in parameters.items() if name != "params"}
    assert {name: f.default for name, f in LBFGSBOptions.model_fields.items()} == defaults
    LBFGSBOptions.model_validate(defaults)  # the defaults are within the declared limits


@pytest.mark.parametrize("options", [
    {"maxfun": 15, "m": 5, "factr": 1e12, "pgtol": 0, "maxiter": 100, "maxls": 10},
    {"bounds": None}, {"bounds": [None, 1]}, {"bounds": [-1.5, 2]}, {"bounds": [0.5, 0.5]},
])
def test_valid_options_load(tmp_path: Path, options: dict) -> None:
    recipe = load_recipe(_recipe(tmp_path, **options), host=make_host(plugin))
    given = recipe.config.optimizer.options
    assert given == {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


@pytest.mark.parametrize(("options", "message"), [
    ({"maxfun": 0}, "optimizer.maxfun: must be >= 1, got 0"),
    ({"m": 2.5}, "optimizer.m: must be an integer, got 2.5"),
    ({"maxls": -1}, "optimizer.maxls: must be >= 1, got -1"),
    ({"maxiter": True}, "optimizer.maxiter: must be an integer, got true"),
    ({"factr": -1}, "optimizer.factr: must be >= 0, got -1"),
    ({"pgtol": "small"}, "optimizer.pgtol: must be a number"),
    ({"bounds": [1, 0]}, "optimizer.bounds: the lower bound 1 is above the upper bound 0"),
    ({"bounds": [0, 1, 2]}, "optimizer.bounds: has too many items"),
    ({"maxfn": 5}, "optimizer.maxfn: unknown option for optimizer 'scipy-lbfgsb'. "
                   "Did you mean 'maxfun'?"),
])
def test_a_bad_option_is_reported_by_load_recipe(tmp_path: Path, options: dict,
                                                  message: str) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(_recipe(tmp_path, **options), host=make_host(plugin))
    [problem] = caught.value.problems
    assert problem.startswith(f"{tmp_path / 'scipy.yaml'}: {message}"), problem
