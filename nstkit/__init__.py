"""nstkit: plugin-based batch toolkit for optimisation-based neural style transfer."""

from nstkit.hookspecs import hookimpl
from nstkit.result import StyleResult
from nstkit.stylize import LossSpec, stylize

__version__ = "0.1.0"
__all__ = ["LossSpec", "StyleResult", "__version__", "hookimpl", "stylize"]
