"""``python -m figranium_gateway``: read settings, configure logging, serve."""

from __future__ import annotations

import structlog
from aiohttp import web

from figranium_common.logging import configure_logging
from figranium_common.redact import redact_url
from figranium_common.runtime import tune_gc
from figranium_common.settings import Settings
from figranium_gateway.app import create_app


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="gateway")
    tune_gc()
    structlog.get_logger("figranium_gateway").info(
        "gateway.starting", port=settings.port, nats=redact_url(settings.nats_url)
    )
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=3,  # under honcho's 5 s and any orchestrator's grace period
    )


if __name__ == "__main__":
    main()
