"""Running the platform's own scripts in a page without the page seeing them.

``page.evaluate`` runs in the page's main world: the page's scripts can replace
``Function``, ``JSON`` or the setters on ``Object.prototype`` and so read every argument
(a condition gets all of a run's variables). An isolated world, the kind extensions use,
shares the page's DOM but none of its JavaScript globals, so nothing the page defined runs
there. Playwright has no public call for one; a CDP session on the page does.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import CDPSession, Page
from playwright.async_api import Error as PlaywrightError

from figranium_common.jsontypes import JsonValue

_WORLD_NAME = "figranium"


class IsolatedWorld:
    """One page's isolated world, made again after each navigation replaced the document."""

    def __init__(self, page: Page) -> None:
        self._page = page
        self._session: CDPSession | None = None
        self._context_id: int | None = None

    async def evaluate(self, function: str, arg: JsonValue = None) -> JsonValue:
        """Call the JavaScript ``function`` with ``arg`` (JSON); its result, as JSON.

        Raises PlaywrightError when the function throws, as ``page.evaluate`` would."""
        for attempt in range(2):
            session, context_id = await self._context()
            try:
                reply = await session.send(
                    "Runtime.callFunctionOn",
                    {
                        "functionDeclaration": function,
                        "executionContextId": context_id,
                        # Passed by value: V8 builds the argument itself, so no script of
                        # the page (not even a setter on Object.prototype) sees it made.
                        "arguments": [{"value": arg}],
                        "returnByValue": True,
                        "awaitPromise": True,
                    },
                )
            except PlaywrightError as exc:
                # The document this world belonged to is gone: a navigation since the last
                # call. Once more in a world of the new document.
                if attempt == 0 and "Cannot find context" in str(exc):
                    self._context_id = None
                    continue
                raise
            details = reply.get("exceptionDetails")
            if details:
                raise PlaywrightError(_describe(details))
            value: JsonValue = reply.get("result", {}).get("value")
            return value
        raise AssertionError("unreachable")  # pragma: no cover

    async def _context(self) -> tuple[CDPSession, int]:
        if self._session is None:
            self._session = await self._page.context.new_cdp_session(self._page)
        if self._context_id is None:
            tree = await self._session.send("Page.getFrameTree")
            world = await self._session.send(
                "Page.createIsolatedWorld",
                {"frameId": tree["frameTree"]["frame"]["id"], "worldName": _WORLD_NAME},
            )
            self._context_id = int(world["executionContextId"])
        return self._session, self._context_id


def _describe(details: dict[str, Any]) -> str:
    exception = details.get("exception") or {}
    text = exception.get("description") or details.get("text") or "the script threw"
    return str(text)
