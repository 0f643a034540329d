"""Listening to notices: valid ones reach their handler, invalid ones are logged and
dropped, and a listener stops once however often it is told to."""

from __future__ import annotations

from nats.aio.msg import Msg
from structlog.testing import capture_logs

from figranium_common.models import SettingsNotice
from figranium_common.nats import Listener, MessageHandler, notice_handler


def _message(data: bytes) -> Msg:
    return Msg(_client=None, subject="figranium.notify.settings", data=data)  # type: ignore[arg-type]


async def test_valid_notices_reach_sync_and_async_handlers() -> None:
    heard: list[str] = []

    async def later(notice: SettingsNotice) -> None:
        heard.append(f"async {notice.key}")

    await notice_handler(SettingsNotice, lambda n: heard.append(n.key), bad_event="x")(
        _message(b'{"key": "api_key"}')
    )
    await notice_handler(SettingsNotice, later, bad_event="x")(_message(b'{"key": "proxies"}'))
    assert heard == ["api_key", "async proxies"]


async def test_an_invalid_notice_is_logged_and_dropped() -> None:
    heard: list[SettingsNotice] = []
    handler = notice_handler(SettingsNotice, heard.append, bad_event="settings.bad_notice")
    with capture_logs() as logs:
        await handler(_message(b"not json"))
        await handler(_message(b'{"other": 1}'))
    assert heard == []
    assert [(entry["event"], entry["subject"]) for entry in logs] == [
        ("settings.bad_notice", "figranium.notify.settings")
    ] * 2


async def test_a_listener_unsubscribes_once() -> None:
    unsubscribed: list[str] = []

    class Subscription:
        async def unsubscribe(self) -> None:
            unsubscribed.append("sub")

    class Client:
        async def subscribe(self, subject: str, cb: MessageHandler) -> Subscription:
            return Subscription()

    async def ignore(msg: Msg) -> None:
        pass

    listener = Listener()
    await listener.stop()  # before listening: nothing to undo
    await listener.listen(Client(), "figranium.notify.changes", ignore)  # type: ignore[arg-type]
    await listener.stop()
    await listener.stop()
    assert unsubscribed == ["sub"]
