"""Dense optical flow between frames, backward warping, and the masks of the pixels the flow
can be trusted at (Ruder, Dosovitskiy & Brox 2016, after Sundaram, Brox & Keutzer 2010).

Convention: a flow ``F`` of ``source`` towards ``target`` has ``source(x) ≈ target(x + F(x))``
(OpenCV's and torchvision's RAFT's): channel 0 is the horizontal displacement (columns),
channel 1 the vertical one (rows), in pixels. To bring the previous frame's result into the
current frame, warp it with the flow of the current frame towards the previous one (the
*backward* flow).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from nstkit.errors import NstkitError

FlowMethod = Literal["dis", "farneback", "raft"]
FLOW_METHODS: tuple[str, ...] = ("dis", "farneback", "raft")


class FlowError(NstkitError):
    """Flow cannot be computed as asked (an unknown method, RAFT without its weights)."""


def _check_images(*images: torch.Tensor) -> None:
    for image in images:
        if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
            raise ValueError(f"frames must be (1, 3, H, W), got {tuple(image.shape)}")
    if len({tuple(image.shape) for image in images}) > 1:
        raise ValueError(f"frames must have one shape, got {[tuple(i.shape) for i in images]}")


def _check_flow(flow: torch.Tensor, what: str = "flow") -> None:
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"{what} must be (B, 2, H, W), got {tuple(flow.shape)}")


def _grey(image: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` RGB in ``[0, 1]`` -> ``(H, W)`` uint8 luma (BT.601), as OpenCV wants."""
    r, g, b = image[0].detach().float().cpu().clamp(0, 1)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return (luma * 255).round().to(torch.uint8).numpy()


def _opencv_flow(source: torch.Tensor, target: torch.Tensor, method: str) -> torch.Tensor:
    import cv2

    a, b = _grey(source), _grey(target)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(a, b, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=4, winsize=15,
                                            iterations=5, poly_n=5, poly_sigma=1.1, flags=0)
    return torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1).unsqueeze(0)


RAFT_MIN = 128
"""RAFT's smallest input side (its correlation pyramid); smaller frames are padded."""


def raft_weights_path() -> Path:
    """Where torchvision keeps RAFT's weights once downloaded (``$TORCH_HOME/hub/checkpoints``)."""
    from torchvision.models.optical_flow import Raft_Large_Weights

    url = Raft_Large_Weights.C_T_SKHT_V2.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


@functools.cache
def _raft(device: str) -> torch.nn.Module:
    """torchvision's RAFT (large) with its pretrained weights, from the local cache only."""
    from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

    path = raft_weights_path()
    if not path.is_file():
        raise FlowError(f"--flow raft needs torchvision's RAFT weights, which are not on this "
                        f"machine ({path} is missing; torchvision downloads them from "
                        f"{Raft_Large_Weights.C_T_SKHT_V2.url} when it can reach it). Copy "
                        f"that file there, or use --flow dis (the default) or farneback")
    model = raft_large(weights=Raft_Large_Weights.C_T_SKHT_V2, progress=False)
    return model.eval().to(device)


def raft_flow(source: torch.Tensor, target: torch.Tensor,
              model: torch.nn.Module | None = None) -> torch.Tensor:
    """RAFT's flow of ``source`` towards ``target`` (frames padded, repeating their borders, to
    a multiple of 8 and at least :data:`RAFT_MIN`).

    Args:
        model: a RAFT module (default: torchvision's ``raft_large`` with its pretrained
            weights, if they are on this machine; else :class:`FlowError`).

    Shape:
        - source, target: ``(1, 3, H, W)``, RGB in ``[0, 1]``.
        - Output: ``(1, 2, H, W)`` on the CPU, float32.
    """
    _check_images(source, target)
    model = model if model is not None else _raft("cuda" if torch.cuda.is_available() else "cpu")
    device = next(model.parameters()).device
    h, w = source.shape[-2:]
    pad = (0, max(RAFT_MIN, w + (-w) % 8) - w, 0, max(RAFT_MIN, h + (-h) % 8) - h)
    a, b = (F.pad(x.float().to(device) * 2 - 1, pad, mode="replicate") for x in (source, target))
    with torch.no_grad():
        flow = model(a, b)[-1]
    return flow[..., :h, :w].float().cpu()


def estimate_flow(source: torch.Tensor, target: torch.Tensor,
                  method: str = "dis") -> torch.Tensor:
    """The dense flow of ``source`` towards ``target``: ``source(x) ≈ target(x + F(x))``.

    Args:
        method: ``dis`` (OpenCV's DIS, medium preset: fast and accurate on the CPU),
            ``farneback`` (OpenCV's Farneback) or ``raft`` (torchvision's RAFT, when its
            weights are on this machine).

    Shape:
        - source, target: ``(1, 3, H, W)``, RGB in ``[0, 1]``.
        - Output: ``(1, 2, H, W)``, float32 on the CPU, in pixels (channel 0: x, 1: y).

    Raises:
        FlowError: an unknown method, or RAFT without its weights.
    """
    _check_images(source, target)
    if method in ("dis", "farneback"):
        return _opencv_flow(source, target, method)
    if method == "raft":
        return raft_flow(source, target)
    raise FlowError(f"unknown flow method {method!r}; use one of {', '.join(FLOW_METHODS)}")


def _base_grid(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates ``x`` (columns) and ``y`` (rows), each ``(1, H, W)``."""
    h, w = flow.shape[-2:]
    y, x = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                          torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    return x.unsqueeze(0), y.unsqueeze(0)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` sampled at ``x + flow(x)`` (bilinear; outside the frame, the nearest border
    pixel): the image brought to the frame the flow starts from.

    Shape:
        - image: ``(B, C, H, W)`` (``B`` may be 1 for any flow batch).
        - flow: ``(B, 2, H, W)`` or ``(1, 2, H, W)``, in pixels.
        - Output: ``(B, C, H, W)``, the image's dtype.
    """
    _check_flow(flow)
    if image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)} and flow {tuple(flow.shape)} must have "
                         f"the same (H, W)")
    flow = flow.to(device=image.device, dtype=image.dtype)
    h, w = flow.shape[-2:]
    x, y = _base_grid(flow)
    gx = (x + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (y + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([gx, gy], dim=-1)
    batch = max(image.shape[0], grid.shape[0])
    return F.grid_sample(image.expand(batch, -1, -1, -1), grid.expand(batch, -1, -1, -1),
                         mode="bilinear", padding_mode="border", align_corners=True)


def inside(flow: torch.Tensor) -> torch.Tensor:
    """Where ``x + flow(x)`` lands inside the frame: ``(B, 1, H, W)`` bool."""
    _check_flow(flow)
    h, w = flow.shape[-2:]
    x, y = _base_grid(flow)
    tx, ty = x + flow[:, 0], y + flow[:, 1]
    return ((tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)).unsqueeze(1)


def occlusion_mask(backward: torch.Tensor, forward: torch.Tensor, *,
                   motion_boundaries: bool = True) -> torch.Tensor:
    """The pixels of the current frame whose backward flow can be trusted, as Ruder et al.
    (2016) find them: 1 where the flow is consistent, 0 where it is not (disocclusions),
    on motion boundaries, and where it leads out of the frame.

    With ``w = backward(x)`` and ``ŵ = forward(x + w)`` (the forward flow where ``x`` came
    from), ``x`` is disoccluded when ``|w + ŵ|² > 0.01 (|w|² + |ŵ|²) + 0.5``; it is on a motion
    boundary when ``|∇u|² + |∇v|² > 0.01 |w|² + 0.002`` (``u, v`` the components of ``w``).

    Args:
        backward: the flow of the current frame towards the previous one.
        forward: the flow of the previous frame towards the current one.
        motion_boundaries: also exclude motion boundaries.

    Shape:
        - backward, forward: ``(B, 2, H, W)``, in pixels.
        - Output: ``(B, 1, H, W)``, float in ``{0, 1}``.
    """
    _check_flow(backward, "backward")
    _check_flow(forward, "forward")
    forward = forward.to(backward)
    there = warp(forward, backward)
    difference = (there + backward).pow(2).sum(1, keepdim=True)
    size = there.pow(2).sum(1, keepdim=True) + backward.pow(2).sum(1, keepdim=True)
    valid = (difference <= 0.01 * size + 0.5) & inside(backward)
    if motion_boundaries:
        dx = F.pad(backward[..., :, 1:] - backward[..., :, :-1], (0, 1, 0, 0))
        dy = F.pad(backward[..., 1:, :] - backward[..., :-1, :], (0, 0, 0, 1))
        gradient = dx.pow(2).sum(1, keepdim=True) + dy.pow(2).sum(1, keepdim=True)
        valid &= gradient <= 0.01 * backward.pow(2).sum(1, keepdim=True) + 0.002
    return valid.to(backward.dtype)


def warping_error(current: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> float:
    """The temporal warping error ``mean |O_t - warp(O_{t-1})|`` over the pixels where ``mask``
    is 1 (and over channels); NaN when the mask is empty.

    Shape:
        - current, warped: ``(B, C, H, W)``, RGB in ``[0, 1]``.
        - mask: ``(B or 1, 1, H, W)``, in ``[0, 1]`` (a weight per pixel).
    """
    mask = mask.to(current)
    total = ((current - warped.to(current)).abs().mean(1, keepdim=True) * mask).sum()
    count = mask.expand(current.shape[0], -1, -1, -1).sum()
    return float(total / count) if count > 0 else float("nan")


def flow_error(estimated: torch.Tensor, true: torch.Tensor,
               mask: torch.Tensor | None = None) -> float:
    """Mean end-point error ``|F_est - F_true|`` in pixels (over ``mask``'s pixels if given).

    Shape:
        - estimated, true: ``(B, 2, H, W)``; mask: ``(B or 1, 1, H, W)``.
    """
    error = (estimated - true.to(estimated)).pow(2).sum(1, keepdim=True).sqrt()
    if mask is None:
        return float(error.mean())
    mask = mask.to(error)
    return float((error * mask).sum() / mask.expand_as(error).sum().clamp_min(1))
