"""The model file: what it records, and the files it refuses (corrupt, malicious, mismatched)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

pytest.importorskip("nstkit_fast", reason="nstkit-fast is not installed: "
                    "pip install -e plugins/nstkit-fast")

from nstkit_fast.modelfile import (
    FastModel,
    ModelFileError,
    load_model,
    read_metadata,
    save_model,
)
from nstkit_fast.network import NetworkSettings, TransformNet

from nstkit.recipe import load_recipe


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    recipe = load_recipe("fast")
    fast = FastModel(TransformNet(NetworkSettings(4, 1)), recipe.data, recipe.hash,
                     {"name": "wave.png", "sha256": "ab" * 32, "size": 256},
                     {"steps": 3}, {"nstkit": "0.1.0", "torch": torch.__version__})
    return save_model(fast, tmp_path / "wave.safetensors")


def test_round_trip_keeps_weights_and_records(model):
    loaded = load_model(model)
    torch.manual_seed(0)
    original = TransformNet(NetworkSettings(4, 1)).state_dict()
    for name, value in loaded.net.state_dict().items():
        assert torch.equal(value, original[name]), name
    assert loaded.settings == NetworkSettings(4, 1)
    assert loaded.recipe == load_recipe("fast").data
    assert loaded.recipe_hash == load_recipe("fast").hash
    assert loaded.style == {"name": "wave.png", "sha256": "ab" * 32, "size": 256}
    assert loaded.versions["torch"] == torch.__version__
    assert loaded.name == "wave"
    assert len(loaded.sha256) == 64
    assert not loaded.net.training


def test_metadata_is_json_strings(model):
    from safetensors import safe_open

    with safe_open(str(model), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == "nstkit-fast"
    assert metadata["format_version"] == "1"
    assert json.loads(metadata["network"]) == {"width": 4, "blocks": 1}
    assert json.loads(metadata["recipe"])["name"] == "fast"


def test_a_pickle_renamed_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps({"net": Exploit()}))
    with pytest.raises(ModelFileError, match="not a safetensors model file"):
        load_model(bad)
    torch_file = tmp_path / "evil2.safetensors"
    torch.save({"net": Exploit()}, torch_file)
    with pytest.raises(ModelFileError, match="not a safetensors model file"):
        load_model(torch_file)
    assert not marker.exists()


def test_a_truncated_file_is_refused(model):
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=str(model)):
        load_model(model)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "none.safetensors")


def _rewrite(path: Path, tensors=None, **metadata) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        values = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    meta.update({k: v for k, v in metadata.items() if v is not None})
    for k in [k for k, v in metadata.items() if v is None]:
        meta.pop(k)
    save_file(tensors if tensors is not None else values, str(path), metadata=meta)
    return values


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "something-else"}, "not an nstkit-fast model"),
    ({"format_version": "99"}, "format version '99'"),
    ({"network": json.dumps({"width": 8, "blocks": 1})}, "do not fit the declared network"),
    ({"network": json.dumps({"width": 4, "blocks": 2})}, "missing: res.1"),
    ({"network": "not json"}, "'network' is missing or not JSON"),
    ({"network": json.dumps({"width": -1, "blocks": 1})}, "width must be"),
    ({"recipe": json.dumps([1, 2])}, "'recipe' must be a JSON object"),
    ({"recipe_hash": None}, "recipe_hash"),
])
def test_metadata_that_does_not_match_is_refused(model, change, message):
    _rewrite(model, **change)
    with pytest.raises(ModelFileError, match=message):
        load_model(model)


def test_extra_wrongly_shaped_or_non_finite_tensors_are_refused(model):
    values = _rewrite(model)
    _rewrite(model, {**values, "payload": torch.zeros(3)})
    with pytest.raises(ModelFileError, match="unexpected: payload"):
        load_model(model)
    name = "down.0.1.weight"
    _rewrite(model, {**values, name: torch.zeros(4, 3, 3, 3)})
    with pytest.raises(ModelFileError, match=f"wrong shape: {name}"):
        load_model(model)
    _rewrite(model, {**values, name: values[name].double()})
    with pytest.raises(ModelFileError, match="float32"):
        load_model(model)
    broken = values[name].clone()
    broken[0, 0, 0, 0] = float("nan")
    _rewrite(model, {**values, name: broken})
    with pytest.raises(ModelFileError, match="NaN"):
        load_model(model)


def test_metadata_is_read_without_the_tensors(model):
    meta = read_metadata(model)
    assert meta["settings"] == NetworkSettings(4, 1)
    assert meta["training"] == {"steps": 3}
