"""The optimisation schedule (issue 16): the iterates' moving average (``ema``), the optimiser
state carried between multi-scale stages (``multiscale.carry_state``) and the scale ladder
(``multiscale.min_size`` / ``ratio``), as crowsonkb's style-transfer-pytorch runs them."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from nstkit.config import MultiscaleConfig, ladder
from nstkit.errors import RecipeError
from nstkit.optim import carry_state
from nstkit.optimisation import WeightedTerm, optimise
from nstkit.recipe import load_recipe
from nstkit.stylisation import stage_plan
from nstkit.testing import TinyExtractor, stylize_tiny

LADDER = "multiscale={min_size: 16, ratio: 1.5, iterations: [2, 1]}"  # 32 px: 21, 32


def problems(*sets: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe("gatys", sets)
    return info.value.problems


# --- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(("item", "message"), [
    ("ema=1.0", "--set: ema: must be < 1, got 1.0"),
    ("ema=0", "--set: ema: must be > 0, got 0"),
    ("ema=high", "--set: ema: must be a number or null, got 'high'"),
    ("multiscale={iterations: [1]}", "--set: multiscale: needs scales (fractions of size) or "
     "min_size (a ladder up to size by ratio)"),
    ("multiscale={scales: [0.5, 1.0], min_size: 128, iterations: [1, 1]}",
     "--set: multiscale: scales and min_size are two forms of the stages; give one"),
    ("multiscale={scales: [0.5, 1.0], ratio: 2.0, iterations: [1, 1]}",
     "--set: multiscale: ratio belongs to the ladder form (min_size); remove it or use "
     "min_size instead of scales"),
    ("multiscale={min_size: 8, iterations: [1]}",
     "--set: multiscale.min_size: must be >= 16, got 8"),
    ("multiscale={min_size: 128, ratio: 1.0, iterations: [1]}",
     "--set: multiscale.ratio: must be > 1, got 1.0"),
    ("multiscale={min_size: 16, ratio: 1.01, iterations: [1]}",
     "--set: multiscale: a ladder from 512 px down to 16 px by ratio 1.01 has more than 32 "
     "stages; raise ratio or min_size"),
    ("multiscale={scales: [0.5, 1.0], iterations: [1, 1], carry_state: 1}",
     "--set: multiscale.carry_state: must be true or false, got 1"),
    ("multiscale={scales: [0.5, 1.0], iterations: [1, 1], carry_state: true}",
     "--set: multiscale: carry_state cannot carry L-BFGS's history (flat vectors of one "
     "stage's pixel count) to another size; use optimizer adam or sgd, or carry_state: false"),
])
def test_each_new_key_has_a_one_line_error(item: str, message: str) -> None:
    assert problems(item) == [message]


def test_the_three_keys_validate_together() -> None:
    config = load_recipe("gatys", ["ema=0.99", "optimizer={name: adam, iterations: 30}",
                                   "multiscale={min_size: 128, iterations: [1000, 500], "
                                   "carry_state: true}"]).config
    assert config.ema == 0.99
    assert config.multiscale.ratio == math.sqrt(2)  # the default ratio
    assert config.multiscale.carry_state is True


def test_the_new_keys_at_their_defaults_keep_the_hash() -> None:
    gatys = load_recipe("gatys").hash
    assert load_recipe("gatys", ["ema=null"]).hash == gatys  # top-level: hashed only when set
    assert load_recipe("gatys", ["ema=0.99"]).hash != gatys
    fast = load_recipe("fast")
    assert "carry_state" not in fast.data["multiscale"]  # multiscale is hashed as written


# --- the ladder --------------------------------------------------------------------------------
@pytest.mark.parametrize(("longest", "min_size", "ratio", "sides"), [
    (512, 128, math.sqrt(2), [128, 181, 256, 362, 512]),      # crowsonkb's defaults
    (512, 128, 1.41421356, [128, 181, 256, 362, 512]),        # sqrt(2) as a recipe may write it
    (1000, 128, math.sqrt(2), [177, 250, 354, 500, 707, 1000]),  # counted down from the full size
    (512, 100, 2.0, [128, 256, 512]),
    (100, 128, math.sqrt(2), [100]),                          # min_size above the full size
    (16, 16, 1.01, [16]),                                     # one side, however it rounds
])
def test_ladder_sides(longest: int, min_size: int, ratio: float, sides: list[int]) -> None:
    assert ladder(longest, min_size, ratio) == sides


def test_ladder_shares_repeat_the_last_and_split_the_iterations() -> None:
    crowson = MultiscaleConfig(min_size=128, iterations=[1000, 500])
    pairs = crowson.stages(512)
    assert [round(scale * 512) for scale, _ in pairs] == [128, 181, 256, 362, 512]
    assert stage_plan(3000, pairs) == [(0.25, 1000), (181 / 512, 500), (0.5, 500),
                                       (362 / 512, 500), (1.0, 500)]
    own = MultiscaleConfig(min_size=128, ratio=2.0, iterations=[1, 2, 3])
    assert own.stages(512) == [(0.25, 1), (0.5, 2), (1.0, 3)]  # one share per rung
    with pytest.raises(ValueError, match="needs the result's longest side"):
        crowson.stages()
    assert MultiscaleConfig(scales=[0.5, 1.0], iterations=[1, 3]).stages() == [(0.5, 1),
                                                                                  (1.0, 3)]


# --- the iterates' average ---------------------------------------------------------------------
class _Mean(torch.nn.Module):
    def forward(self, image: torch.Tensor, features: object) -> torch.Tensor:
        return image.mean()


class _Scripted:
    """An "optimiser" whose steps set the image to given values."""

    def __init__(self, image: torch.Tensor, values: Iterator[torch.Tensor]) -> None:
        self.image, self.values = image, values

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.image.grad = None

    def step(self, closure) -> None:
        closure()
        with torch.no_grad():
            self.image.copy_(next(self.values))


def test_ema_returns_the_bias_corrected_average_of_the_iterates() -> None:
    decay, steps = 0.8, 5
    generator = torch.Generator().manual_seed(0)
    iterates = [torch.rand(1, 3, 4, 4, generator=generator) for _ in range(steps + 1)]
    image = iterates[0].clone().requires_grad_(True)
    seen: list[torch.Tensor] = []
    history = optimise(image, [WeightedTerm("mean", 1.0, _Mean())], TinyExtractor(), [],
                       _Scripted(image, iter(iterates[1:])), steps, ema=decay,
                       notify=lambda step, losses, image: seen.append(image.clone()))
    weights = [decay ** (steps - i) for i in range(steps + 1)]  # x_0 (the start) .. x_steps
    expected = sum(w * x for w, x in zip(weights, iterates, strict=True)) / sum(weights)
    torch.testing.assert_close(image.detach(), expected)
    assert history["total"][-1] == pytest.approx(expected.mean().item())  # the average's loss
    assert history["total"][:-1] == pytest.approx([x.mean().item() for x in iterates[:-1]])
    torch.testing.assert_close(seen[-1], iterates[-1])  # on_step shows the iterate


def test_without_ema_the_result_is_the_last_iterate() -> None:
    iterates = [torch.full((1, 3, 4, 4), v) for v in (0.1, 0.5, 0.9)]
    image = iterates[0].clone().requires_grad_(True)
    optimise(image, [WeightedTerm("mean", 1.0, _Mean())], TinyExtractor(), [],
             _Scripted(image, iter(iterates[1:])), 2)
    torch.testing.assert_close(image.detach(), iterates[-1])


# --- the optimiser's state across stages -------------------------------------------------------
def _stepped(optimizer: type[torch.optim.Optimizer], shape: tuple[int, ...],
             steps: int = 3, **options: object) -> tuple[torch.Tensor, torch.optim.Optimizer]:
    image = torch.rand(shape, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    opt = optimizer([image], **options)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (image - 0.3).pow(2).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return image, opt


def test_adam_state_is_resized_to_the_new_image_and_keeps_its_step() -> None:
    old_image, old = _stepped(torch.optim.Adam, (1, 3, 8, 6), lr=0.02)
    image = torch.zeros(1, 3, 12, 9, requires_grad=True)
    new = torch.optim.Adam([image], lr=0.05)
    carry_state(old, new)
    before, after = old.state[old_image], new.state[image]
    assert after["exp_avg"].shape == after["exp_avg_sq"].shape == (1, 3, 12, 9)
    torch.testing.assert_close(after["exp_avg"], F.interpolate(
        before["exp_avg"], size=(12, 9), mode="bilinear", align_corners=False))
    assert after["exp_avg_sq"].min() >= 0
    assert float(after["step"]) == float(before["step"]) == 3
    assert new.param_groups[0]["lr"] == 0.05  # the new optimiser's own hyperparameters
    image.grad = torch.ones_like(image)
    new.step()  # Adam runs on the carried state
    assert float(new.state[image]["step"]) == 4


def test_lbfgs_history_cannot_be_carried() -> None:
    _, old = _stepped(torch.optim.LBFGS, (1, 3, 8, 8), steps=2, max_iter=1)
    new = torch.optim.LBFGS([torch.zeros(1, 3, 12, 12, requires_grad=True)])
    with pytest.raises(ValueError, match=r"optimiser state 'd' \(192,\) is not shaped like "
                                         r"the image \(1, 3, 8, 8\)"):
        carry_state(old, new)


def test_carrying_the_state_changes_the_run() -> None:
    options = {"optimizer": "adam", "iterations": 6}
    ladder_ = {"min_size": 16, "ratio": 1.5, "iterations": [2, 1], "detail": False}
    fresh = stylize_tiny(multiscale=ladder_, **options)
    carried = stylize_tiny(multiscale={**ladder_, "carry_state": True}, **options)
    assert fresh.stages == carried.stages == [[21 / 32, 4], [1.0, 2]]
    first = len(fresh.history["total"]) - 3  # the full-size stage: 2 steps, then the result
    assert fresh.history["total"][:first] == carried.history["total"][:first]
    assert not torch.equal(fresh.image, carried.image)


# --- end to end --------------------------------------------------------------------------------
def test_a_tiny_run_with_average_carried_state_and_ladder() -> None:
    result = stylize_tiny(optimizer="adam", iterations=6, ema=0.9,
                          multiscale={"min_size": 16, "ratio": 1.5, "iterations": [2, 1],
                                      "carry_state": True})
    assert result.stages == [[21 / 32, 4], [1.0, 2]]
    assert result.image.shape == (1, 3, 32, 32)
    assert result.image.min() >= 0
    assert result.image.max() <= 1
    assert len(result.history["total"]) == 6 + 2
    assert result.settings["ema"] == 0.9
    assert result.settings["multiscale"]["carry_state"] is True


def test_a_ladder_with_fewer_rungs_than_shares_uses_the_first_shares() -> None:
    """A small result (crowson's [1000, 500] at 48 px: one rung, min_size clipped to the
    size) runs the first shares only, as crowsonkb's min(min_scale, end_scale) does."""
    ladder = MultiscaleConfig(min_size=16, ratio=1.5, iterations=[3, 1, 1])
    assert ladder.stages(32) == [(21 / 32, 3), (1.0, 1)]
    assert MultiscaleConfig(min_size=128, iterations=[1000, 500]).stages(48) == [(1.0, 1000)]
    result = stylize_tiny(multiscale={"min_size": 16, "ratio": 1.5, "iterations": [3, 1, 1]},
                          iterations=8)
    assert result.stages == [[21 / 32, 6], [1.0, 2]]
