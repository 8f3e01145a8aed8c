"""Training: the loss falls, the recipe's terms are prepared per batch where they read the
content, resuming gives the weights of an uninterrupted run, checkpoints of another training
are refused, unreadable photos are skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("nstkit_fast", reason="nstkit-fast is not installed: "
                    "pip install -e plugins/nstkit-fast")

from fast_testkit import (
    small_settings,
    state,
    tiny_recipe,
    write_photos,
    write_style,
)
from nstkit_fast.network import NetworkSettings
from nstkit_fast.photos import Photos
from nstkit_fast.training import side_paths, train

from nstkit.errors import NstkitError

pytestmark = pytest.mark.usefixtures("tiny_host")


@pytest.fixture
def inputs(tmp_path: Path):
    return (tiny_recipe(tmp_path), write_style(tmp_path / "style.png"),
            write_photos(tmp_path / "photos", 3))


def test_the_loss_falls_and_every_file_is_written(inputs, tmp_path):
    recipe, style, photos = inputs
    model = tmp_path / "m.safetensors"
    reports = []
    result = train(recipe, style, photos, model,
                   small_settings(steps=30, checkpoint_every=10, preview_every=15),
                   report=reports.append)
    total = result.history["total"]
    assert len(total) == 30
    assert set(result.history) == {"content", "gram", "total"}
    assert sum(total[-6:]) / 6 < 0.5 * sum(total[:6]) / 6
    assert [r.step for r in reports] == list(range(1, 31))
    assert all(r.images_per_second > 0 for r in reports)
    paths = side_paths(model)
    assert model.is_file()
    assert paths["checkpoint"].is_file()
    assert paths["curve"].is_file()
    assert sorted(p.name for p in paths["previews"].iterdir()) == \
        ["step-000015.jpg", "step-000030.jpg"]
    from nstkit_fast.modelfile import load_model

    loaded = load_model(model)
    assert loaded.recipe_hash == recipe.hash
    assert loaded.training["steps"] == 30
    assert loaded.style["name"] == "style.png"
    assert loaded.training["size"] == 64


def test_resuming_gives_the_weights_of_an_uninterrupted_run(inputs, tmp_path):
    recipe, style, photos = inputs
    whole = tmp_path / "whole.safetensors"
    train(recipe, style, photos, whole, small_settings(steps=6))
    parts = tmp_path / "parts.safetensors"
    first = train(recipe, style, photos, parts, small_settings(steps=3))
    assert first.steps == 3
    second = train(recipe, style, photos, parts, small_settings(steps=6))
    assert second.resumed_from == 3
    assert second.steps == 6
    a, b = state(whole), state(parts)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_ctrl_c_writes_a_checkpoint_that_resumes_exactly(inputs, tmp_path):
    recipe, style, photos = inputs
    whole = tmp_path / "whole.safetensors"
    train(recipe, style, photos, whole, small_settings(steps=5, checkpoint_every=0))
    stopped = tmp_path / "stopped.safetensors"

    def interrupt(report):
        if report.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(recipe, style, photos, stopped, small_settings(steps=5, checkpoint_every=0),
              report=interrupt)
    assert side_paths(stopped)["checkpoint"].is_file()
    assert stopped.is_file()
    resumed = train(recipe, style, photos, stopped, small_settings(steps=5,
                                                                   checkpoint_every=0))
    assert resumed.resumed_from == 2
    assert len(resumed.history["total"]) == 5
    a, b = state(whole), state(stopped)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_checkpoint_of_another_training_is_refused(inputs, tmp_path):
    recipe, style, photos = inputs
    model = tmp_path / "m.safetensors"
    train(recipe, style, photos, model, small_settings(steps=2))
    with pytest.raises(NstkitError, match="different training"):
        train(recipe, style, photos, model,
              small_settings(steps=4, network=NetworkSettings(8, 1)))
    again = train(recipe, style, photos, model,
                  small_settings(steps=2, network=NetworkSettings(8, 1)), restart=True)
    assert again.resumed_from == 0


def test_a_checkpoint_that_is_not_one_is_refused(inputs, tmp_path):
    recipe, style, photos = inputs
    model = tmp_path / "m.safetensors"
    checkpoint = side_paths(model)["checkpoint"]
    assert checkpoint.name == "m.checkpoint.safetensors"
    checkpoint.write_bytes(b"garbage")
    with pytest.raises(NstkitError, match=r"checkpoint .* cannot be read .* --restart"):
        train(recipe, style, photos, model, small_settings(steps=1))
    from nstkit_fast.modelfile import FastModel, save_model
    from nstkit_fast.network import TransformNet

    not_one = FastModel(TransformNet(NetworkSettings(4, 1)), {}, "0" * 64, {})
    save_model(not_one, checkpoint)  # safetensors, but a model
    with pytest.raises(NstkitError, match="is not an nstkit-fast checkpoint"):
        train(recipe, style, photos, model, small_settings(steps=1))


def test_a_malicious_checkpoint_runs_nothing(inputs, tmp_path):
    """A pickle with a payload where the checkpoint is expected: refused, the payload not run
    (checkpoints are safetensors: nothing in the plugin unpickles)."""
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    recipe, style, photos = inputs
    model = tmp_path / "m.safetensors"
    for write in (lambda p: p.write_bytes(pickle.dumps({"step": 3, "x": Exploit()})),
                  lambda p: torch.save({"step": 3, "x": Exploit()}, p)):
        write(side_paths(model)["checkpoint"])
        with pytest.raises(NstkitError, match="cannot be read"):
            train(recipe, style, photos, model, small_settings(steps=1))
    assert not marker.exists()


def test_the_checkpoint_holds_the_state_a_resume_needs(inputs, tmp_path):
    from nstkit_fast.training import read_checkpoint

    recipe, style, photos = inputs
    model = tmp_path / "m.safetensors"
    result = train(recipe, style, photos, model, small_settings(steps=3, checkpoint_every=0))
    metadata, tensors = read_checkpoint(side_paths(model)["checkpoint"])
    assert metadata["step"] == "3"
    assert len(metadata["key"]) == 64
    weights = state(model)
    assert all(torch.equal(tensors[f"net/{name}"], value) for name, value in weights.items())
    assert tensors["history/total"].tolist() == result.history["total"]
    assert tensors["adam/0/step"].item() == 3.0
    assert tensors["adam/0/exp_avg"].shape == weights["down.0.1.weight"].shape
    assert tensors["adam/0/exp_avg_sq"].abs().sum() > 0


def test_content_terms_are_prepared_per_batch_and_style_once(inputs, tmp_path, monkeypatch):
    from nstkit.losses.content import ContentLoss
    from nstkit.losses.gram import GramLoss

    calls = {"content": 0, "gram": 0}
    for cls, name in ((ContentLoss, "content"), (GramLoss, "gram")):
        original = cls.prepare

        def counted(self, targets, original=original, name=name):
            calls[name] += 1
            return original(self, targets)

        monkeypatch.setattr(cls, "prepare", counted)
    recipe, style, photos = inputs
    train(recipe, style, photos, tmp_path / "m.safetensors", small_settings(steps=4))
    assert calls == {"content": 4, "gram": 1}


def test_unreadable_photos_are_skipped_and_reported(inputs, tmp_path):
    recipe, style, photos = inputs
    bad = tmp_path / "photos" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    result = train(recipe, style, [*photos, bad], tmp_path / "m.safetensors",
                   small_settings(steps=4))
    assert list(result.skipped_photos) == [str(bad)]
    assert "ImageError" in result.skipped_photos[str(bad)]


def test_no_readable_photo_is_an_error(inputs, tmp_path):
    recipe, style, _ = inputs
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"x")
    with pytest.raises(NstkitError, match="none of the 1 training photos"):
        train(recipe, style, [bad], tmp_path / "m.safetensors", small_settings(steps=1))


def test_batches_are_a_function_of_seed_and_step(tmp_path):
    photos = Photos(write_photos(tmp_path / "p", 3), 64, 32)
    again = Photos(list(photos.paths), 64, 32)
    first = photos.batch(0, 5, 3)
    assert first.shape == (3, 3, 32, 32)
    assert torch.equal(first, again.batch(0, 5, 3))
    assert torch.equal(photos.prefetched(0, 5, 3), first)
    assert torch.equal(photos.prefetched(0, 6, 3), again.batch(0, 6, 3))
    assert not torch.equal(first, photos.batch(0, 6, 3))
    photos.close()


def test_a_crop_larger_than_the_photos_is_refused(inputs, tmp_path):
    recipe, style, photos = inputs
    with pytest.raises(NstkitError, match="larger than the photos"):
        train(recipe, style, photos, tmp_path / "m.safetensors",
              small_settings(crop=128, size=64))


def test_bf16_precision_trains_the_network_under_autocast(inputs, tmp_path, monkeypatch):
    """``precision: bf16``: the network's forward runs in bfloat16; the first step's loss (the
    same initial weights) is close to the float32 run's but not equal (bf16 keeps about 3
    significant digits)."""
    from nstkit_fast.network import TransformNet

    from nstkit.recipe import load_recipe

    recipe, style, photos = inputs
    dtypes = []
    forward = TransformNet.forward

    def recorded(self, image):
        out = forward(self, image)
        dtypes.append(out.dtype)
        return out

    monkeypatch.setattr(TransformNet, "forward", recorded)
    fp32 = train(recipe, style, photos, tmp_path / "a.safetensors", small_settings(steps=2))
    bf16_recipe = load_recipe(tmp_path / "tiny.yaml", ["precision=bf16"])
    bf16 = train(bf16_recipe, style, photos, tmp_path / "b.safetensors",
                 small_settings(steps=2))
    assert dtypes == [torch.float32] * 2 + [torch.bfloat16] * 2
    a, b = fp32.history["total"][0], bf16.history["total"][0]  # the same weights
    assert a != b
    assert abs(a - b) < 0.01 * a


def test_a_time_budget_stops_with_a_model_whose_weights_depend_on_the_seed_only(inputs,
                                                                               tmp_path):
    recipe, style, photos = inputs
    models = [tmp_path / f"m{i}.safetensors" for i in range(3)]
    for index, (model, seed) in enumerate(zip(models, (0, 0, 1), strict=True)):
        torch.manual_seed(100 + index)  # the caller's RNG state plays no part
        result = train(recipe, style, photos, model,
                       small_settings(steps=50, max_seconds=0.0, seed=seed))
        assert result.stopped == "time"
        assert result.steps == 0
    a, b, c = (state(model) for model in models)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a["down.0.1.weight"], c["down.0.1.weight"])
