"""The recipe hash of every built-in recipe, pinned: old output folders keep resuming.

The values were recorded before the typed configuration replaced the hand-written schema; a
change here means every user's finished outputs would be redone on their next run.
"""

from __future__ import annotations

import pytest

from nstkit.recipe import builtin_recipes, load_recipe

PINNED = {
    "cnam": "3c20bf85702c172d7b202e637f852134f44b8b9d47e1d41994e379b7d40c149e",
    "colour-preserving": "4ead973cfcaee99122aedfef012638bf25a227659ba03b0c397085d7aeacaf5e",
    "content-reconstruction": "bbfdc1b6057dca7ae541ebed8b60460ff268d47a55deda50ea622a615165d1f0",
    "crowson": "55230deceed8c11428477e3275749c2ce7e181930e07f535f3c431b984562861",
    "fast": "c9a4f44cc40d64878c62f63cfb56829ef48d45ba2d4e4e2ea11ed65f6f6dfccd",
    "fast-sliced": "2330de5665236b6b6db70d1e26c7f0e6137f262a2068b9382c4b75a8a37effd7",
    # changed on purpose 2026-11-30: style weight 0.6618 -> 1.9854 (bench/RESULTS.md, issue 16)
    "fast-wasserstein": "80dc8ec0e8aad04bc213e7285e222ad118f9551b453ff4a24d750ad30e37de1e",
    "fastai-vgg16": "bddf68c1eb2de7a2601f51e03bc5d64b1a3d5f3982bd1d64c2bfbbfd39d0690a",
    "gatys": "3b0381b46ba42ae64297e1c6a75be2e1b40bb15dfcb7e5db68050dc4e8a689f5",
    "improved": "1f0df77063510d50e3fa5b5e2ea7977dfea240ecc706a0f7681eb4e5cf170e9d",
    "keras-tutorial": "530b418551042705a7539e960d246c43187ed8a127cec69210b1d202f0454a06",
    "preview": "29280364222c4336f84cef328bab6f9b2c11b260816e60f754083807eaf3afb5",
    "style-reconstruction": "e048348806947210adcb5ababf5645b7db5f6faf4e3bd0829dd43d5d157161c0",
    "tf-adam": "63da75cfec8ab2bc59869f5d8e88f1d420c324b7c4554d011057369eaed782fd",
}


def test_every_builtin_recipe_is_pinned() -> None:
    assert set(builtin_recipes()) == set(PINNED)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_builtin_recipe_hash_is_unchanged(name: str) -> None:
    assert load_recipe(name).hash == PINNED[name]
