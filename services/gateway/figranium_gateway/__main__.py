"""``python -m figranium_gateway``: read settings, configure logging, serve."""

from __future__ import annotations

import structlog
from aiohttp import web

from figranium_common.config import Config
from figranium_common.gc_tuning import tune_gc
from figranium_common.logging import configure_logging
from figranium_common.redact import redact_url
from figranium_gateway.app import create_app


def main() -> None:
    config = Config()
    configure_logging(config.log_level, config.log_format, service="gateway")
    tune_gc()
    structlog.get_logger("figranium_gateway").info(
        "gateway.starting", port=config.port, nats=redact_url(config.nats_url)
    )
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        print=None,
        access_log=None,
        shutdown_timeout=3,  # under make run's 5 s and any orchestrator's grace period
    )


if __name__ == "__main__":
    main()
