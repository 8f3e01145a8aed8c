"""The transformation network: shapes at any size, range, resize-convolution, settings, and
tiled inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("nstkit_fast", reason="nstkit-fast is not installed: "
                    "pip install -e plugins/nstkit-fast")

from nstkit_fast.inference import _through_tiles, stylise, tiled, tiles
from nstkit_fast.network import (
    InstanceNorm,
    NetworkSettings,
    TransformNet,
    recorded_statistics,
)

from nstkit.testing import tiny_images


@pytest.fixture
def net() -> TransformNet:
    torch.manual_seed(0)
    return TransformNet(NetworkSettings(width=4, blocks=2)).eval()


@pytest.mark.parametrize(("height", "width"), [(32, 32), (33, 47), (64, 20), (5, 7), (1, 1)])
def test_any_size_in_same_size_out(net, height, width):
    out = net(torch.rand(2, 3, height, width))
    assert out.shape == (2, 3, height, width)
    assert out.min() >= 0
    assert out.max() <= 1


def test_the_layers_of_johnson_et_al_with_resize_convolutions():
    net = TransformNet()  # width 32, 5 blocks
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs[:3]] \
        == [(3, 32, 9, 1), (32, 64, 3, 2), (64, 128, 3, 2)]
    assert convs[-1].out_channels == 3
    assert convs[-1].kernel_size == (9, 9)
    assert len(net.res) == 5
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    assert sum(isinstance(m, nn.Upsample) for m in net.modules()) == 2
    assert sum(isinstance(m, InstanceNorm) for m in net.modules()) == 3 + 2 * 5 + 2
    assert sum(p.numel() for p in net.parameters()) == 1_679_235


@pytest.mark.parametrize("bad", [{"width": 0, "blocks": 1}, {"width": 4, "blocks": 33},
                                 {"width": 4.0, "blocks": 1}, {"width": 4},
                                 {"width": 4, "blocks": 1, "extra": 1}, [4, 1]])
def test_settings_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="network"):
        NetworkSettings.from_dict(bad)


def test_bad_input_shape_is_refused(net):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 8, 8))


def test_tiles_partition_the_image():
    cover = torch.zeros(100, 180, dtype=torch.int64)
    for (rows, cols), (core_rows, core_cols) in tiles(100, 180, 64, 16):
        assert core_rows.stop - core_rows.start <= 32
        assert rows.start % 4 == 0
        assert cols.start % 4 == 0
        assert rows.start <= core_rows.start
        assert core_rows.stop <= rows.stop
        cover[core_rows, core_cols] += 1
    assert (cover == 1).all()


@torch.no_grad()
def test_tiles_with_the_whole_images_statistics_are_the_whole_image(net):
    image = torch.rand(1, 3, 83, 121)
    whole = net(image)
    with recorded_statistics(net):
        net(image)
    assert torch.allclose(_through_tiles(net, image, 160), whole, atol=1e-5)


@torch.no_grad()
def test_tiled_inference_is_close_to_whole_and_used_above_the_tile_size(net):
    image = tiny_images(200).content
    whole = net(image)
    assert (tiled(net, image, 160) - whole).abs().mean() < 0.05
    assert torch.equal(stylise(net, image, tile=None), whole.clamp(0, 1))
    assert torch.equal(stylise(net, image, tile=200), whole.clamp(0, 1))
    assert not torch.equal(stylise(net, image, tile=160), whole.clamp(0, 1))


@pytest.mark.parametrize("how", ["luminance", "linear", "histogram"])
def test_colour_preservation_keeps_the_content_colours(net, how):
    content = tiny_images(32).content
    plain = stylise(net, content)
    kept = stylise(net, content, preserve_colour=how)
    assert kept.shape == content.shape
    assert kept.min() >= 0
    assert kept.max() <= 1
    def chroma_error(x):
        return (x.mean((-2, -1)) - x.mean((-3, -2, -1), keepdim=True).squeeze(-1)
                - (content.mean((-2, -1)) - content.mean((-3, -2, -1)).unsqueeze(-1))
                ).abs().sum()
    assert chroma_error(kept) < chroma_error(plain)


def test_unknown_colour_option_is_refused(net):
    with pytest.raises(ValueError, match="preserve_colour"):
        stylise(net, torch.rand(1, 3, 8, 8), preserve_colour="sepia")
