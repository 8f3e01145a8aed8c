"""Optical flow, warping and occlusion masks, against motion known exactly."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("nstkit_video", reason="nstkit-video is not installed: "
                    "pip install -e plugins/nstkit-video")

from nstkit_video.flow import (
    FlowError,
    estimate_flow,
    flow_error,
    inside,
    occlusion_mask,
    raft_flow,
    warp,
    warping_error,
)
from nstkit_video.synthetic import pan_flow, panning_clip

from nstkit.image import load_image
from nstkit.samples import samples_dir


@pytest.fixture(scope="module")
def picture() -> torch.Tensor:
    return load_image(samples_dir() / "content" / "chelsea.jpg")  # (1, 3, 170, 256)


@pytest.mark.parametrize(("method", "limit"), [("dis", 0.1), ("farneback", 0.25)])
@pytest.mark.parametrize("step", [(1, 2), (0, -3), (2, 1)])
def test_flow_of_a_pan_is_the_pan(picture, method, limit, step):
    """The estimated backward flow's mean end-point error, in pixels, over the pixels the pan
    keeps in frame (DIS measured 0.03 px at 48x64 and 96x128)."""
    frames = panning_clip(picture, 2, (64, 96), step, start=(10, 20))
    true, mask = pan_flow((64, 96), step)
    estimated = estimate_flow(frames[1], frames[0], method)
    assert estimated.shape == (1, 2, 64, 96)
    assert flow_error(estimated, true, mask) < limit


def test_unknown_flow_method_is_refused(picture):
    frame = picture[..., :16, :16]
    with pytest.raises(FlowError, match="unknown flow method 'lucas'; use one of dis"):
        estimate_flow(frame, frame, "lucas")


def test_raft_without_its_weights_says_where_they_go(picture, tmp_path, monkeypatch):
    from nstkit_video import flow

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    flow._raft.cache_clear()
    frame = picture[..., :32, :32]
    with pytest.raises(FlowError, match=r"needs torchvision's RAFT weights.*--flow dis"):
        estimate_flow(frame, frame, "raft")


def test_raft_flow_runs_a_raft_model_on_padded_frames(picture):
    """The RAFT path with a randomly initialised small RAFT (the pretrained weights cannot be
    downloaded here): odd sizes are padded to a multiple of 8 and cropped back."""
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    frames = panning_clip(picture, 2, (36, 44), (1, 1))
    out = raft_flow(frames[1], frames[0], model=raft_small(weights=None).eval())
    assert out.shape == (1, 2, 36, 44)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_warp_by_whole_pixels_is_an_exact_shift(picture, dtype):
    previous = picture[..., :40, :50].to(dtype)
    flow, mask = pan_flow((40, 50), (2, -3))  # sample at x + (-3, 2)
    warped = warp(previous, flow)
    assert warped.dtype == dtype
    torch.testing.assert_close(warped[..., :38, 3:], previous[..., 2:, :47], rtol=0, atol=1e-6)
    assert mask[..., :38, 3:].all()
    assert mask.sum() == 38 * 47
    assert torch.equal(inside(flow), mask.bool())


def test_warp_by_half_a_pixel_interpolates():
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 4, 8)
    flow = torch.zeros(1, 2, 4, 8)
    flow[:, 0] = 0.5
    torch.testing.assert_close(warp(ramp, flow)[..., :7], ramp[..., :7] + 0.5)


def test_warp_gradient_flows_to_the_image():
    image = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    flow = torch.rand(1, 2, 5, 6, dtype=torch.float64) * 2 - 1
    torch.autograd.gradcheck(lambda x: warp(x, flow), (image,))


def test_consistent_flows_are_trusted_except_where_they_leave_the_frame():
    flow, mask = pan_flow((30, 40), (1, 2))
    backward = flow
    forward = -flow  # the previous frame moves the other way
    found = occlusion_mask(backward, forward)
    torch.testing.assert_close(found, mask)


def test_a_moving_square_disoccludes_the_background_it_leaves():
    """A square moves 4 px right over a still background: the strip it uncovers has no
    consistent flow (Ruder et al.'s forward-backward check), nor does its moving border."""
    h, w = 32, 32
    forward = torch.zeros(1, 2, h, w)
    forward[:, 0, 8:20, 8:20] = 4  # previous frame: the square at columns 8..19
    backward = torch.zeros(1, 2, h, w)
    backward[:, 0, 8:20, 12:24] = -4  # current frame: at columns 12..23
    mask = occlusion_mask(backward, forward, motion_boundaries=False)
    assert mask[0, 0, 8:20, 8:12].eq(0).all()  # uncovered: background there, square before
    assert mask[0, 0, 8:20, 13:23].eq(1).all()  # the square itself: consistent
    assert mask[0, 0, :6].eq(1).all()  # background away from it
    bounded = occlusion_mask(backward, forward, motion_boundaries=True)
    assert bounded[0, 0, 8:20, 11].eq(0).all()
    assert bounded[0, 0, 8:20, 23].eq(0).all()
    assert bounded.sum() < mask.sum()


def test_warping_error_is_the_masked_mean_absolute_difference():
    current = torch.zeros(1, 3, 2, 2)
    warped = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]]).expand(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]])
    assert warping_error(current, warped, mask) == pytest.approx((0.1 + 0.2 + 0.4) / 3)
    assert torch.isnan(torch.tensor(warping_error(current, warped, torch.zeros_like(mask))))


def test_the_pan_leaves_the_frame_when_too_long(picture):
    with pytest.raises(ValueError, match="needs rows up to"):
        panning_clip(picture, 200, (64, 96), (1, 2))


def test_warp_is_bilinear_sampling_at_x_plus_flow():
    """Against bilinear interpolation written out by hand, for a random sub-pixel flow that
    stays inside the frame (x: columns, flow channel 0; y: rows, channel 1)."""
    generator = torch.Generator().manual_seed(0)
    h, w = 7, 9
    image = torch.rand(1, 2, h, w, generator=generator, dtype=torch.float64)
    flow = torch.rand(1, 2, h, w, generator=generator, dtype=torch.float64) * 3 - 1.5
    warped = warp(image, flow)
    checked = 0
    for y in range(h):
        for x in range(w):
            sx, sy = x + flow[0, 0, y, x].item(), y + flow[0, 1, y, x].item()
            if not (0 <= sx <= w - 1 and 0 <= sy <= h - 1):
                continue
            x0, y0 = min(int(sx), w - 2), min(int(sy), h - 2)
            ax, ay = sx - x0, sy - y0
            expected = ((1 - ax) * (1 - ay) * image[0, :, y0, x0]
                        + ax * (1 - ay) * image[0, :, y0, x0 + 1]
                        + (1 - ax) * ay * image[0, :, y0 + 1, x0]
                        + ax * ay * image[0, :, y0 + 1, x0 + 1])
            torch.testing.assert_close(warped[0, :, y, x], expected)
            checked += 1
    assert checked > h * w // 3


def test_flow_error_is_the_mean_end_point_distance():
    true = torch.zeros(1, 2, 4, 5)
    estimated = true.clone()
    estimated[:, 0], estimated[:, 1] = 3.0, 4.0  # 5 px off everywhere
    estimated[..., 0, 0] = 0.0  # exact at one pixel
    assert flow_error(estimated, true) == pytest.approx(5 * 19 / 20)
    mask = torch.zeros(1, 1, 4, 5)
    mask[..., 0, :2] = 1  # the exact pixel and one 5 px off
    assert flow_error(estimated, true, mask) == pytest.approx(2.5)


@pytest.mark.parametrize(("error", "trusted"), [(0.70, True), (0.73, False)])
def test_disocclusion_threshold(error, trusted):
    """``|w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5`` with ``ŵ = (1, 0)``, ``w̃ = (-1 + e, 0)``:
    ``e = 0.70``: 0.49 <= 0.5109, trusted; ``e = 0.73``: 0.5329 > 0.5107, disoccluded."""
    backward = torch.zeros(1, 2, 12, 12)
    backward[:, 0] = 1.0
    forward = torch.zeros(1, 2, 12, 12)
    forward[:, 0] = -1.0 + error
    mask = occlusion_mask(backward, forward)
    assert mask[..., :, :11].eq(float(trusted)).all()
    assert mask[..., :, 11].eq(0).all()  # x + 1 leaves the frame


@pytest.mark.parametrize(("jump", "boundary"), [(0.04, False), (0.06, True)])
def test_motion_boundary_threshold(jump, boundary):
    """``|∇u|² + |∇v|² > 0.01 |ŵ|² + 0.002``: a still frame whose right half moves by
    ``jump`` px (forward differences): 0.0016 is no boundary, 0.0036 is one."""
    backward = torch.zeros(1, 2, 8, 8)
    backward[:, 1, :, 4:] = jump
    forward = -warp(backward, backward)  # consistent, so only the boundary test can fail
    with_boundaries = occlusion_mask(backward, forward)
    without = occlusion_mask(backward, forward, motion_boundaries=False)
    assert without[..., :7, :].eq(1).all()
    assert with_boundaries[..., :7, 3].eq(0 if boundary else 1).all()
    assert with_boundaries[..., :7, [0, 1, 2, 4, 5, 6, 7]].eq(1).all()


class _FakeRaft(torch.nn.Module):
    """Returns each pixel's own coordinates as its flow, and records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        self.seen = [a, b]
        h, w = a.shape[-2:]
        y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return [torch.zeros(1, 2, h, w), torch.stack([x, y]).float().unsqueeze(0)]


def test_raft_flow_pads_normalises_and_crops_back():
    """RAFT gets ``[-1, 1]`` frames padded (repeating borders) to a multiple of 8 and at
    least 128 a side; its last prediction is cropped back to the frame's top-left."""
    generator = torch.Generator().manual_seed(0)
    source, target = (torch.rand(1, 3, 36, 139, generator=generator) for _ in range(2))
    model = _FakeRaft()
    flow = raft_flow(source, target, model=model)
    a, b = model.seen
    assert a.shape == b.shape == (1, 3, 128, 144)
    torch.testing.assert_close(a[..., :36, :139], source * 2 - 1)
    torch.testing.assert_close(b[..., :36, :139], target * 2 - 1)
    torch.testing.assert_close(a[..., 36:, :139], (source[..., -1:, :] * 2 - 1).expand(
        -1, -1, 92, -1))
    y, x = torch.meshgrid(torch.arange(36.0), torch.arange(139.0), indexing="ij")
    torch.testing.assert_close(flow, torch.stack([x, y]).unsqueeze(0))
