"""Quantile functions of 1-D empirical distributions, for the distribution-matching terms
(:mod:`nstkit.losses.sliced`, :mod:`nstkit.losses.histogram`).

An image and a style rarely have the same number of positions, so a term compares the image's
sorted values with the style's quantile function sampled at the image's quantile levels: with
``N`` positions, the value of rank ``j`` (0-based) sits at level ``(j + 1/2) / N``, and the
style's quantile function interpolates linearly between its own sorted values at their levels
(constant beyond the first and last). With equal counts this is the style's sorted values
exactly. Several style images blended with weights ``b_k`` are the mixture ``Σ b_k P_k`` (as the
Gram and Wasserstein terms' blended moments are): its samples are all the styles' values, each
weighing ``b_k / n_k``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def quantile_levels(count: int, *, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The levels ``(j + 1/2) / count`` of ``count`` equally weighted sorted values,
    ``(count,)``."""
    return (torch.arange(count, device=device, dtype=dtype) + 0.5) / count


def interpolate_quantiles(values: torch.Tensor, levels: torch.Tensor,
                          at: torch.Tensor) -> torch.Tensor:
    """The quantile function through ``(levels, values)``, linear in between, at levels ``at``.

    Shape:
        - values: ``(..., M)`` sorted along the last dimension; levels: ``(M,)`` or the same
          shape as ``values``, increasing along the last dimension.
        - at: ``(N,)``.
        - Output: ``(..., N)``; below the first level the first value, above the last the last.
    """
    m = values.shape[-1]
    if m == 1:
        return values.expand(*values.shape[:-1], at.shape[-1])
    levels, at = levels.to(values.dtype), at.to(values.dtype)
    if levels.dim() == 1:  # shared levels: one search, then a gather along the last dimension
        upper = torch.searchsorted(levels, at).clamp(1, m - 1)
        lo_level, hi_level = levels[upper - 1], levels[upper]
        lo_value, hi_value = values[..., upper - 1], values[..., upper]
    else:
        query = at.expand(*values.shape[:-1], at.shape[-1]).contiguous()
        upper = torch.searchsorted(levels.contiguous(), query).clamp(1, m - 1)
        lo_level, hi_level = levels.gather(-1, upper - 1), levels.gather(-1, upper)
        lo_value, hi_value = values.gather(-1, upper - 1), values.gather(-1, upper)
    gap = (hi_level - lo_level).clamp_min(torch.finfo(values.dtype).tiny)
    t = ((at - lo_level) / gap).clamp(0, 1)
    return torch.lerp(lo_value, hi_value, t)  # exact at t = 0 and t = 1


def mixture_sorted(samples: Sequence[torch.Tensor],
                   weights: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixture ``Σ w_k P_k`` of empirical distributions as sorted values and their levels.

    Each row of ``samples[k]`` is a sample of ``P_k``; its values weigh ``w_k / n_k`` and sit
    at the middle of their weight in the cumulative distribution (``(i + 1/2) / n`` for a
    single sample). Weights of zero drop their sample.

    Shape:
        - samples: ``(R, n_k)`` each (the same ``R`` rows: directions or channels).
        - Output: values ``(R, M)`` sorted along the last dimension, ``M = Σ n_k``; levels
          ``(M,)`` for a single sample, else ``(R, M)``.
    """
    kept = [(s, float(w)) for s, w in zip(samples, weights, strict=True) if w > 0]
    if not kept:
        raise ValueError("the style blend has no positive weight")
    if len(kept) == 1:
        values = kept[0][0].sort(dim=-1).values
        return values, quantile_levels(values.shape[-1], device=values.device,
                                       dtype=values.dtype)
    total = sum(w for _, w in kept)
    values = torch.cat([s for s, _ in kept], dim=-1)
    mass = torch.cat([torch.full((s.shape[-1],), w / total / s.shape[-1], device=s.device,
                                 dtype=s.dtype) for s, w in kept])
    values, order = values.sort(dim=-1)
    mass = mass.expand_as(values).gather(-1, order)
    return values, mass.cumsum(-1) - mass / 2


def mixture_quantiles(samples: Sequence[torch.Tensor], weights: Sequence[float],
                      count: int) -> torch.Tensor:
    """The quantiles of the mixture ``Σ w_k P_k`` (see :func:`mixture_sorted`) at the levels
    of ``count`` equally weighted values (:func:`quantile_levels`). A single sample with
    ``count == n`` gives its sorted values exactly.

    Shape:
        - samples: ``(R, n_k)`` each.
        - Output: ``(R, count)``, in ``samples``' dtype.
    """
    values, levels = mixture_sorted(samples, weights)
    return interpolate_quantiles(values, levels, quantile_levels(count, device=values.device,
                                                                 dtype=values.dtype))
