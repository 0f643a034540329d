"""structlog configuration: done once per process, at the entry point."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from figranium_common.redact import redact_log_event


def configure_logging(level: str = "INFO", fmt: str = "auto", service: str = "") -> None:
    """JSON lines when not on a terminal (or when asked), a readable console otherwise.

    Context bound with ``structlog.contextvars.bind_contextvars`` (``execution_id``,
    ``task_id``) appears in every line logged while it is bound. Libraries that use the
    standard logging module (aiohttp's access log, asyncio, psycopg_pool) are rendered by
    the same processors, so a log collector reads one JSON object a line whatever wrote it.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # A URL logged anywhere (a NATS server, a proxy, a page) never shows its password.
        redact_log_event,
    ]
    if service:
        shared.insert(0, _add_service(service))
    renderer: Any
    if use_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(shared, renderer)


def _route_standard_logging(shared: list[Any], renderer: Any) -> None:
    """Send the standard logging module's records through structlog's processors.

    At warning level, so libraries do not drown our own lines; each line also names the
    library's logger (``logger``). A handler left by an earlier call is replaced, not doubled.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _add_service(service: str) -> Any:
    def processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    return processor
