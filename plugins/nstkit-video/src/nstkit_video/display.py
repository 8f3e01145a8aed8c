"""What ``nstkit video`` shows: ``nstkit run``'s display (a bar over the videos, a bar over the
iterations of the frame being stylised in this process, a line per finished video) plus a bar
per video over its frames; without bars, a line per frame too (unless ``--quiet``)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import TaskID

from nstkit.hookspecs import hookimpl
from nstkit.job import JobInfo
from nstkit.runner.display import BatchDisplay


class VideoDisplay(BatchDisplay):
    """Progress of a ``nstkit video`` run; also a plugin (the lifecycle hooks of
    :class:`nstkit.runner.display.BatchDisplay`, and ``on_job_end``).

    Args:
        console: where to draw (stderr).
        live: draw bars (a terminal, not ``--quiet``); otherwise print lines.
        frame_lines: without bars, print a line per frame too.
    """

    def __init__(self, console: Console, live: bool, frame_lines: bool = True) -> None:
        super().__init__(console, live)
        self.frame_lines = frame_lines
        self.videos: dict[str, TaskID] = {}

    def start(self, total: int, skipped: int) -> None:
        """The run has ``total`` videos to make; ``skipped`` were done by an earlier run."""
        if skipped:
            self.console.print(f"{skipped} video(s) already done (resuming; --overwrite "
                               f"redoes them)", highlight=False)
        super().start(total, 0)
        if self.overall is not None:
            self.progress.update(self.overall, description="videos")

    def frame_done(self, name: str, index: int, total: int | None, resumed: bool,
                   seconds: float, error: float) -> None:
        """Frame ``index`` (from 1) of video ``name`` is done (``resumed``: by an earlier run),
        in ``seconds``, with the warping error ``error`` (NaN for the first frame)."""
        detail = "resumed" if resumed else f"done in {seconds:.1f} s"
        if not math.isnan(error):
            detail += f", warping error {error:.4f}"
        count = f"{index}/{total}" if total else str(index)
        if self.live:
            if name not in self.videos:
                self.videos[name] = self.progress.add_task(name, total=total, info="",
                                                           count="", eta="")
            self.progress.update(self.videos[name], completed=index, total=total,
                                 count=count, info=f"frame {index}: {detail}")
        elif self.frame_lines:
            self.console.print(f"{name} frame {count}: {detail}", highlight=False,
                               markup=False)

    def video_finished(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        """One line for the video ``name`` (its frame bar removed)."""
        if name in self.videos:
            self.progress.remove_task(self.videos.pop(name))
        self.job_finished(name, status, seconds, detail)

    @hookimpl
    def on_job_end(self, job: JobInfo) -> None:
        """A frame's stylisation ended: its iteration bar goes."""
        if job.name in self.job_tasks:
            self.progress.remove_task(self.job_tasks.pop(job.name)[0])
