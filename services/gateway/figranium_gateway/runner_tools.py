"""The client of the runners' request/reply services (page capture, script check, action
test).

Any runner answers (a queue group); the gateway needs no runner of its own. NATS errors
are translated here: no runner subscribed, or none answering in time, is RunnerUnavailable.
"""

from __future__ import annotations

from typing import TypeVar

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, ValidationError

from figranium_common.errors import FigraniumError, describe
from figranium_common.models import (
    PageCaptureReply,
    PageCaptureRequest,
    ScriptCheckReply,
    ScriptCheckRequest,
    TestActionReply,
    TestActionRequest,
)
from figranium_common.nats import (
    TOOLS_PAGE_SUBJECT,
    TOOLS_SCRIPT_SUBJECT,
    TOOLS_TEST_ACTION_SUBJECT,
)

M = TypeVar("M", bound=BaseModel)


class RunnerUnavailable(FigraniumError):
    code = "NO_RUNNER"


class RequestTooLarge(FigraniumError):
    code = "REQUEST_TOO_LARGE"


async def capture_page(
    nc: NATS, request: PageCaptureRequest, *, timeout: float
) -> PageCaptureReply:
    """The page before ``request.action_index``, from any runner; failures on the page (a
    refused URL, a failed action, the runner's own timeout) come back in ``error``.

    ``timeout`` should exceed ``request.timeout_seconds``: the runner answers within that
    (with an error if need be), and a longer wait tells a slow page from a missing runner.
    """
    data = await _request(nc, TOOLS_PAGE_SUBJECT, request, timeout)
    return _parse(PageCaptureReply, data)


async def check_script(nc: NATS, script: str, *, timeout: float = 10.0) -> str | None:
    """None when ``script`` compiles as an extraction script, else the error's message."""
    data = await _request(nc, TOOLS_SCRIPT_SUBJECT, ScriptCheckRequest(script=script), timeout)
    return _parse(ScriptCheckReply, data).error


async def try_action(nc: NATS, request: TestActionRequest, *, timeout: float) -> TestActionReply:
    """One action tried by any runner; as for :func:`capture_page`, ``timeout`` should
    exceed ``request.timeout_seconds``."""
    data = await _request(nc, TOOLS_TEST_ACTION_SUBJECT, request, timeout)
    return _parse(TestActionReply, data)


async def _request(nc: NATS, subject: str, body: BaseModel, timeout: float) -> bytes:
    try:
        reply = await nc.request(subject, body.model_dump_json().encode(), timeout=timeout)
    except NoRespondersError:
        raise RunnerUnavailable("no runner answered: none is subscribed; is one running?") from None
    except (NatsTimeoutError, TimeoutError):
        raise RunnerUnavailable(
            f"no runner answered within {timeout:g} s; is one running?"
        ) from None
    except MaxPayloadError:
        raise RequestTooLarge(
            f"the request is larger than a NATS message may be ({nc.max_payload} bytes)"
        ) from None
    except NatsError as exc:  # disconnected, reconnecting, closed
        raise RunnerUnavailable(f"runners cannot be reached: NATS: {describe(exc)}") from None
    return reply.data


def _parse(model: type[M], data: bytes) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise FigraniumError(f"a runner answered something unreadable: {exc}") from None
