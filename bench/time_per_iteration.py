"""Start-up time and seconds per iteration of the default stylisation at 256 and 512 px.

Run from the repository root: ``python bench/time_per_iteration.py`` (uses ../shared/images).
Both line-search settings run in the same process, so their ratio is measured side by side.
"""

from __future__ import annotations

import time

START = time.time()

from pathlib import Path  # noqa: E402

import nstkit  # noqa: E402
from nstkit.plugins import PluginHost  # noqa: E402

IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"
CONTENT, STYLE = IMAGES / "content" / "tubingen.jpg", IMAGES / "style" / "great_wave.jpg"


class FirstStep:
    seen: float | None = None

    @nstkit.hookimpl
    def on_step(self, step: int) -> None:
        if step == 1 and self.seen is None:
            self.seen = time.time()


def main() -> None:
    probe = FirstStep()
    host = PluginHost(autoload=False)
    host.add(probe)
    nstkit.stylize(CONTENT, STYLE, size=256, iterations=1, host=host, device="cpu")
    print(f"start-up to first iteration: {probe.seen - START:.2f} s")
    for size, iterations in [(256, 20), (512, 10)]:
        per_iter = {}
        for search in ["strong_wolfe", None]:
            result = nstkit.stylize(CONTENT, STYLE, size=size, iterations=iterations, host=host,
                                    device="cpu", optimizer_options={"line_search": search})
            per_iter[search] = result.wall_time / iterations
            total = result.history["total"]
            print(f"{size} px, line search {search}: {per_iter[search]:.2f} s/iteration, "
                  f"total loss {total[0]:.3g} -> {total[-1]:.3g}")
        print(f"{size} px: strong Wolfe / none = {per_iter['strong_wolfe'] / per_iter[None]:.2f}")


if __name__ == "__main__":
    main()
