"""Fixtures shared by the test suites of every package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client as NATS

from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with tests that start stacks of their own (``@pytest.mark.stack``) run first;
    each file's tests stay together and in order.

    With ``--dist loadfile --no-loadscope-reorder`` (``make test``) the workers take files
    in this order: the long ones start early and the many short ones fill in at the end,
    rather than one worker finishing a long file alone while the other waits.
    """
    with_stacks = {item.path for item in items if item.get_closest_marker("stack")}
    items.sort(key=lambda item: item.path not in with_stacks)


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNats]:
    """A NATS server with JetStream for the test module, on a free port."""
    with LocalNats(tmp_path_factory.mktemp("nats") / "nats", free_port()) as started:
        yield started


@pytest.fixture
async def nats_client(module_nats: LocalNats) -> AsyncIterator[NATS]:
    """A connection to the module's NATS server, for one test."""
    client = await nats.connect(module_nats.url)
    try:
        yield client
    finally:
        await client.close()
