"""Fixtures of the nstkit-fast tests (helpers that are not fixtures are in ``fast_testkit``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def tiny_host() -> Iterator[None]:
    """A fresh process-wide plugin host with the ``tiny`` extractor, and torch on one thread
    (the tests' timings and results do not depend on the machine's cores); both restored
    after."""
    from nstkit.plugins import reset_host
    from nstkit.testing import add_tiny_extractor

    reset_host()
    add_tiny_extractor()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    reset_host()
