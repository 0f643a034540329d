"""The web console: server-rendered pages (Jinja2 templates) served by the gateway at ``/``.

Pages work without script; small plain JavaScript modules from ``static/`` enhance them.
``setup`` installs the template environment; the routes are in ``pages`` and
``task_pages``, the session middleware in ``gate``.
"""

from __future__ import annotations

import aiohttp_jinja2
import jinja2
from aiohttp import web

from figranium_gateway.console.assets import console_assets


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("figranium_gateway.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
    )
    env.globals["asset"] = console_assets().url
