"""Fixtures shared by the runner's browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.runner.tests.navigation_site import Site, serve_site


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with serve_site() as served:
        yield served
