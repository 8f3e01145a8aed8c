from __future__ import annotations

import pytest
import torch

from nstkit.errors import UnknownComponentError, WeightsError
from nstkit.extractors import VGGExtractor, vgg_layer_names
from nstkit.extractors import weights as W

CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_every_named_layer_has_the_expected_shape(arch: str, pooling: str) -> None:
    extractor = VGGExtractor(arch, pooling=pooling, weights="random")
    names = vgg_layer_names(arch)
    assert len(names) == (31 if arch == "vgg16" else 37)
    features = extractor(torch.rand(2, 3, 64, 48), names)
    for name, value in features.items():
        block = int(name[4])
        scale = 2 ** (block if name.startswith("pool") else block - 1)
        assert value.shape == (2, CHANNELS[block], 64 // scale, 48 // scale), name
    pool_type = torch.nn.AvgPool2d if pooling == "avg" else torch.nn.MaxPool2d
    assert sum(isinstance(m, pool_type) for m in extractor.features) == 5


def test_keras_names_are_aliases_of_relu_outputs() -> None:
    extractor = VGGExtractor("vgg19", weights="random")
    x = torch.rand(1, 3, 32, 32)
    assert extractor.resolve("block4_conv2") == "relu4_2"
    assert extractor.resolve("block5_pool") == "pool5"
    out = extractor(x, ["block1_conv1", "conv1_1"])
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp(min=0))


def test_unknown_layer_lists_the_valid_ones() -> None:
    extractor = VGGExtractor("vgg16", weights="random")
    with pytest.raises(UnknownComponentError) as info:
        extractor.resolve("relu4_4")
    message = str(info.value)
    assert "unknown layer 'relu4_4'" in message
    assert "Did you mean 'relu4_1'?" in message or "Did you mean 'relu4_3'?" in message
    assert "conv1_1, relu1_1, conv1_2" in message


def test_forward_stops_at_the_deepest_requested_layer() -> None:
    extractor = VGGExtractor("vgg19", weights="random")
    index = extractor.layer_names.index
    calls: list[str] = []
    for name, module in zip(extractor.layer_names, extractor.features, strict=True):
        module.register_forward_hook(lambda *_, n=name: calls.append(n))
    extractor(torch.rand(1, 3, 32, 32), ["relu1_1", "relu4_2"])
    assert calls[-1] == "relu4_2"
    assert len(calls) == index("relu4_2") + 1
    truncated = extractor.truncated(["relu3_1", "relu2_1"])
    assert len(truncated.features) == index("relu3_1") + 1
    assert len(extractor.features) == 37  # the original keeps every layer


def test_conv_outputs_are_not_overwritten_by_relu() -> None:
    extractor = VGGExtractor("vgg19", weights="random")
    out = extractor(torch.rand(1, 3, 16, 16), ["conv1_2", "relu1_2"])
    assert (out["conv1_2"] < 0).any()
    assert torch.equal(out["relu1_2"], out["conv1_2"].relu())


@pytest.mark.slow
def test_original_weights_equal_an_independent_decode() -> None:
    raw = torch.load(W.original_weights_path(), map_location="cpu", weights_only=True)
    extractor = VGGExtractor("vgg19", weights="original")
    convs = [m for m in extractor.features if isinstance(m, torch.nn.Conv2d)]
    blocks = [(b, i) for b, n in enumerate([2, 2, 4, 4, 4], start=1) for i in range(1, n + 1)]
    assert len(convs) == len(blocks) == 16
    for conv, (b, i) in zip(convs, blocks, strict=True):
        q = raw[f"block{b}_conv{i}_W_q"]
        table = raw[f"block{b}_conv{i}_W_table"]
        expected = torch.tensor([table[int(v)] for v in q.flatten()[:4096]])
        assert torch.equal(conv.weight.flatten()[:4096], expected)
        assert torch.equal(conv.weight, table[q.long()])  # the whole tensor, vectorised
        assert torch.equal(conv.bias, raw[f"block{b}_conv{i}_b"])


@pytest.mark.slow
def test_original_weights_expect_caffe_bgr_input() -> None:
    extractor = VGGExtractor("vgg19")
    x = torch.zeros(1, 3, 1, 1)
    x[:, 0] = 1.0  # pure red
    y = extractor.normalize(x)
    assert y.flatten().tolist() == pytest.approx([-103.939, -116.779, 255 - 123.68])


def test_original_weights_exist_only_for_vgg19() -> None:
    with pytest.raises(WeightsError, match="vgg19 only"):
        VGGExtractor("vgg16", weights="original")


def test_state_dict_file_round_trip(tmp_path) -> None:
    source = VGGExtractor("vgg16", weights="random")
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in source.features.state_dict().items()}, path)
    loaded = VGGExtractor("vgg16", weights=path)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(x, ["relu3_1"])["relu3_1"], source(x, ["relu3_1"])["relu3_1"])
    caffe = VGGExtractor("vgg16", weights=path, normalization="caffe")
    assert caffe.normalize.bgr
    assert caffe.normalize.scale == 255


def test_weight_file_errors_are_clear(tmp_path) -> None:
    with pytest.raises(WeightsError, match="weights file not found"):
        VGGExtractor("vgg19", weights=tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        VGGExtractor("vgg19", weights=corrupt)
    wrong = tmp_path / "wrong.pth"
    torch.save({"0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match="do not fit vgg19"):
        VGGExtractor("vgg19", weights=wrong)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"0.weight": torch.zeros(1), "x": _Payload()}, evil)
    with pytest.raises(WeightsError, match="weights_only=True"):
        VGGExtractor("vgg19", weights=evil)


def test_torchvision_weights_offline_say_how_to_supply_a_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as info:
        VGGExtractor("vgg16")
    message = str(info.value)
    assert "vgg16-397923af.pth" in message
    assert str(tmp_path / "checkpoints") in message


@pytest.mark.parametrize(("arch", "cfg"), [("vgg16", "D"), ("vgg19", "E")])
def test_vgg_layout_is_torchvisions(arch, cfg) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    from nstkit.extractors.vgg import _features

    ours, theirs = _features(arch, "max", "cpu"), make_layers(cfgs[cfg])
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()}
    assert not any(getattr(m, "inplace", False) for m in ours)


@pytest.mark.slow
def test_importing_nstkit_does_not_import_torchvision() -> None:
    import subprocess
    import sys

    code = "import sys, nstkit, nstkit.stylisation, nstkit.cli; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"  # a second of start-up (it imports torch._dynamo)
