"""nstkit-trace: a loss-trace CSV per stylisation, written from nstkit's lifecycle hooks.

Installed, it traces every job into ``$NSTKIT_TRACE_DIR`` (nothing when unset). In code,
register a :class:`LossTrace` explicitly: ``PluginHost(plugins=[LossTrace("traces/")])``.
"""

from nstkit_trace.writer import LossTrace, trace_path

__version__ = "0.1.0"
__all__ = ["LossTrace", "trace_path"]
