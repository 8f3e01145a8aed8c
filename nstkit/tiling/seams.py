"""How visible tile borders are in a result: the seam score."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def seam_score(image: torch.Tensor, rows: Sequence[int], cols: Sequence[int]) -> float:
    """Mean gradient magnitude across tile borders over the mean elsewhere (1: no seams).

    The gradient across a border at column ``c`` is ``|x[..., c] - x[..., c - 1]|`` averaged
    over channels, compared with the same horizontal differences at every other column; rows
    likewise with vertical differences (so an image smoother in one direction than the other
    does not bias the score). The two ratios are averaged, weighted by their border pixels.

    Args:
        image: ``(B, 3, H, W)`` or ``(3, H, W)``, RGB in ``[0, 1]``.
        rows, cols: where one tile's core ends and the next begins (``0 < r < H``).
    """
    image = image.unsqueeze(0) if image.dim() == 3 else image
    across_cols = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=(0, 1)).T  # (W-1, H)
    across_rows = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=(0, 1))  # (H-1, W)
    ratios, weights = [], []
    for differences, borders in ((across_cols, cols), (across_rows, rows)):
        if not borders:
            continue
        mask = torch.zeros(differences.shape[0], dtype=torch.bool)
        mask[[b - 1 for b in borders]] = True
        if mask.all():
            raise ValueError("seam_score needs positions that are not borders")
        ratios.append(differences[mask].mean() / differences[~mask].mean().clamp_min(1e-12))
        weights.append(differences[mask].numel())
    if not ratios:
        raise ValueError("seam_score needs at least one border")
    return float(sum(r * w for r, w in zip(ratios, weights, strict=True)) / sum(weights))
