"""Whether a headful runner is connected, and the one refusal when none is.

Shared by the ad-hoc headful run (refused at once rather than queued for a runner that may
never come) and the viewer tickets (which need a runner to mint them).
"""

from __future__ import annotations

from aiohttp import web

from figranium_gateway.errors import ApiError
from figranium_gateway.state import HEADFUL


def no_headful_runner() -> ApiError:
    return ApiError(
        503,
        "HEADFUL_UNAVAILABLE",
        "no headful runner is connected; start one with RUNNER_HEADFUL=true",
    )


async def require_headful(app: web.Application) -> None:
    """Refuse a headful run at once when no headful runner could take it."""
    if not await app[HEADFUL].check_available():
        raise no_headful_runner()
