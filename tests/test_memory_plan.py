"""Memory plans: whole or tiled, auto tiles and L-BFGS history, refusal before any work."""

from __future__ import annotations

import pytest
import torch

import nstkit
from nstkit.config import StylizeConfig, TilingConfig
from nstkit.memory import (
    CPU_HEAP_SHARE,
    CPU_TILED_HEAP_SHARE,
    estimate_memory,
    optimizer_state_images,
)
from nstkit.memory_plan import MIN_HISTORY, MemoryPlanError, plan_memory, resolved
from nstkit.testing import TinyExtractor, make_host, tiny_images

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
MIB = 2 ** 20


@pytest.fixture(scope="module")
def extractor() -> TinyExtractor:
    return TinyExtractor(width=16)


def _config(**changes) -> StylizeConfig:
    return StylizeConfig(**changes)


def _plan(extractor, config, size, available=None):
    return plan_memory(config, extractor, LAYERS, ["relu4_2"], size, size, 1, available)


def test_whole_image_plan_is_the_estimate(extractor):
    plan = _plan(extractor, _config(), 256, available=10 * 2 ** 30)
    expected = estimate_memory(extractor, LAYERS, 256, 256)
    assert plan.tiling is None
    assert plan.estimate == expected
    assert plan.needed == expected.total - expected.weights - getattr(expected, "runtime", 0)
    assert plan.fits
    plan.check()


def test_a_job_larger_than_memory_is_refused_with_what_to_change(extractor):
    plan = _plan(extractor, _config(), 2048, available=64 * MIB)
    assert not plan.fits
    with pytest.raises(MemoryPlanError, match=r"needs about .* only 64 MiB is available") as info:
        plan.check("x.jpg")
    assert "tiling: auto" in str(info.value)
    assert "--size" in str(info.value)


def test_tiled_memory_does_not_grow_with_activations(extractor):
    """Per tile, the activations are one window's, whatever the image size; what grows is the
    image-sized state (the image, its gradient, the optimiser's, the stitched content)."""
    config = _config(tiling={"tile": 256, "overlap": 32}, optimizer={"name": "adam"})
    small, large = _plan(extractor, config, 1024), _plan(extractor, config, 2048)
    assert small.window is not None
    assert large.window is not None
    assert small.window.activations == large.window.activations
    assert large.estimate.activations == small.estimate.activations
    image = 3 * 4 * (2048 ** 2 - 1024 ** 2)
    assert large.estimate.optimizer - small.estimate.optimizer == \
        image * (optimizer_state_images("adam") + 1)  # + the gradient, filled tile by tile
    whole = _plan(extractor, _config(optimizer={"name": "adam"}), 2048)
    assert large.needed < whole.needed / 3
    assert large.tiles > small.tiles > 1


def test_tiled_windows_count_the_heap_at_the_tiled_share(extractor):
    """A tiled stage's windows keep more of the CPU heap (measured: bench/scaling.py)."""
    config = _config(tiling={"tile": 256, "overlap": 32}, optimizer={"name": "adam"})
    plan = _plan(extractor, config, 1024)
    assert plan.window is not None
    window = estimate_memory(extractor, LAYERS, 256, 256, styles=0, optimizer="adam")
    assert window.allocator > 0
    assert plan.window.allocator == pytest.approx(
        window.allocator * CPU_TILED_HEAP_SHARE / CPU_HEAP_SHARE, abs=2)
    assert plan.estimate.allocator == plan.window.allocator


def test_auto_without_pressure_runs_whole(extractor):
    config = _config(tiling="auto")
    plan = _plan(extractor, config, 256, available=100 * 2 ** 30)
    assert plan.tiling is None
    assert resolved(config, plan).tiling is None


def test_auto_picks_the_largest_tile_that_fits(extractor):
    config = _config(tiling="auto", optimizer={"name": "adam"})
    whole = _plan(extractor, config.model_copy(update={"tiling": None}), 2048)
    tight = _plan(extractor, config, 2048, available=int(whole.needed * 0.3))
    roomy = _plan(extractor, config, 2048, available=int(whole.needed * 0.6))
    assert tight.tiling is not None
    assert roomy.tiling is not None
    assert tight.tiling.tile < roomy.tiling.tile
    for plan in (tight, roomy):
        assert plan.fits
        assert plan.needed <= plan.available * 0.85
    assert resolved(config, roomy).tiling == roomy.tiling


def test_auto_shortens_the_lbfgs_history_or_says_to_use_adam(extractor):
    config = _config(tiling="auto")  # L-BFGS, history 100: 204 image-sized vectors
    image = 3 * 4 * 2048 * 2048
    smallest = _plan(extractor, config.model_copy(update={
        "tiling": TilingConfig(tile=256, overlap=64)}), 2048)
    rest = smallest.needed - 200 * image
    available = int((rest + 40 * image) / 0.85)  # room for a history of about 20
    plan = _plan(extractor, config, 2048, available=available)
    assert plan.history_size is not None
    assert MIN_HISTORY <= plan.history_size < 100
    assert plan.fits
    assert resolved(config, plan).optimizer.options["history_size"] == plan.history_size
    assert "history_size" in plan.describe()
    hopeless = _plan(extractor, config, 2048, available=int(rest * 0.9))
    with pytest.raises(MemoryPlanError, match="adam"):
        hopeless.check()


def test_stylize_refuses_before_any_work(monkeypatch):
    """A job over the memory available fails at once: no on_job_start, no step."""
    events = []

    class Probe:
        @nstkit.hookimpl
        def on_job_start(self, job):
            events.append("start")

        @nstkit.hookimpl
        def on_step(self, step):
            events.append(step)

    monkeypatch.setattr("nstkit.stylisation.available_memory", lambda device: 4 * MIB)
    images = tiny_images(64)
    with pytest.raises(MemoryPlanError, match="tiling: auto"):
        nstkit.stylize(images.content, images.style, host=make_host(Probe()),
                       extractor=TinyExtractor(), size=64, iterations=2, device="cpu")
    assert events == []


def test_stylize_auto_tiles_when_memory_is_short(monkeypatch):
    images = tiny_images(96)
    config = StylizeConfig(size=96, tiling="auto", optimizer={"name": "adam", "iterations": 2},
                           losses=[{"name": "content"}, {"name": "gram", "weight": 1.0}])
    extractor = TinyExtractor()
    whole = plan_memory(config.model_copy(update={"tiling": None}), extractor, LAYERS,
                        ["relu4_2"], 96, 96)
    monkeypatch.setattr("nstkit.stylisation.available_memory",
                        lambda device: int(whole.needed * 0.7))
    monkeypatch.setattr("nstkit.memory_plan.AUTO_TILES", (64,))
    result = nstkit.stylize(images.content, images.style, config, host=make_host(),
                            extractor=extractor, device="cpu")
    assert result.config.tiling == TilingConfig(tile=64, overlap=8)
    assert torch.isfinite(result.image).all()
    assert len(result.history["total"]) == 3


@pytest.mark.slow
def test_a_refused_batch_runs_one_job_at_a_time(tmp_path, run_tiny, records, monkeypatch):
    """Memory for one 32 px job but not two: the batch is refused before any work and each
    job then runs alone."""
    from nstkit.memory_plan import plan_for_recipe
    from nstkit.recipe import load_recipe

    config = load_recipe("gatys", ["size=32"]).config
    one, two = (plan_for_recipe(config, 21, 32, batch) for batch in (1, 2))
    assert two.needed > one.needed * 1.5
    monkeypatch.setattr("nstkit.stylisation.available_memory",
                        lambda device: int(one.needed * 1.5))
    result = run_tiny(tmp_path / "out", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    done = [r for r in records(tmp_path / "out") if r["status"] == "done"]
    assert len(done) == 4
    assert {r["batch_size"] for r in done} == {1}
