"""Which job failures are worth a retry: transient ones (CUDA out of memory, I/O hiccups) yes,
permanent ones (an unreadable image, a bad recipe, a NaN loss) no."""

from __future__ import annotations

import errno

import torch
from PIL import UnidentifiedImageError

from nstkit.errors import PluginError

# OSErrors that say something about the input, not about the moment: retrying cannot help.
_PERMANENT_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM,
                     errno.ENAMETOOLONG, errno.EINVAL}


def is_transient(exc: BaseException) -> bool:
    """True when running the same job again may succeed.

    Transient: CUDA out of memory (another job held the memory), and I/O errors such as
    ``EIO``, ``ENOSPC``, ``ESTALE`` or a timeout on a network file system. Permanent: an image
    that cannot be decoded or does not exist, a recipe or plugin error, a NaN loss, anything
    else. A plugin's exception is judged by its cause (a trace plugin hitting ``ENOSPC`` is
    transient).
    """
    if isinstance(exc, PluginError) and exc.__cause__ is not None:
        return is_transient(exc.__cause__)  # judged by what went wrong inside the plugin
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
        return True  # CUDA OOM raised as a plain RuntimeError (cuDNN, older torch)
    if isinstance(exc, UnidentifiedImageError):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno not in _PERMANENT_ERRNOS
    return False
