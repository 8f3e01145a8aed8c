"""``python -m nstkit``: the command line.

``python -m`` puts the current directory first on ``sys.path``; it is taken off again before
anything else is imported, so a folder of images that holds a ``*.dist-info`` or a module of
the right name cannot become a plugin (or shadow one) by accident. The ``nstkit`` console
script never has the current directory on ``sys.path``.
"""

import os
import sys


def _drop_current_directory() -> None:
    if sys.path and not getattr(sys.flags, "safe_path", False) and \
            sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


_drop_current_directory()

from nstkit.cli import main  # noqa: E402

main()
