"""Fixtures shared by the common library's tests."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from figranium_common.logging import configure_logging


@pytest.fixture
def json_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Logging configured for JSON into a captured stderr; call it for the lines so far,
    each parsed (a line that is not JSON fails the test)."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    configure_logging(fmt="json", service="tests")
    try:
        yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        structlog.reset_defaults()
        for handler in logging.root.handlers[:]:
            if getattr(handler, "stream", None) is out:
                logging.root.removeHandler(handler)
