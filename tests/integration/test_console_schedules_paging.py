"""The console's schedules list pages 25 at a time in task id order, with a "Next page"
link and the count shown; each row's description and next runs are the describe
endpoint's."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest

LIST = "/console/schedules"
PREFIX = "zz-schedule-page-"  # sorts after the other tests' tasks
COUNT = 30
_TASK_CELL = re.compile(r'<td data-label="Task">.*?<code>(.*?)</code>', re.S)
_SHOWN = re.compile(r"Schedules (\d+)\u2013(\d+) of (\d+)")
_NEXT = re.compile(r'<a href="([^"]*)" rel="next">Next page</a>')


@pytest.fixture
def scheduled(api: httpx.Client) -> Iterator[list[str]]:
    """COUNT tasks of this test's own, each with a yearly schedule; removed afterwards."""
    ids = [f"{PREFIX}{n:02d}" for n in range(COUNT)]
    try:
        for n, task_id in enumerate(ids):
            made = api.post("/api/tasks", json={"id": task_id, "name": f"Paged {n}", "actions": []})
            assert made.status_code == 200, made.text
            body = {"cron": f"{n} 3 {1 + n % 28} {1 + n % 12} *", "timezone": "Asia/Tokyo"}
            saved = api.post(f"/api/schedules/{task_id}", json=body)
            assert saved.status_code == 200, saved.text
        yield ids
    finally:
        for task_id in ids:
            api.delete(f"/api/tasks/{task_id}")


def test_the_list_pages_by_task_id(
    api: httpx.Client, browser_like: httpx.Client, scheduled: list[str]
) -> None:
    walked: list[str] = []
    url: str | None = LIST
    pages = 0
    while url is not None:
        page = browser_like.get(url)
        assert page.status_code == 200, page.text
        ids = [html.unescape(found) for found in _TASK_CELL.findall(page.text)]
        assert 0 < len(ids) <= 25
        shown = _SHOWN.search(page.text)
        assert shown is not None, page.text
        first, last, total = map(int, shown.groups())
        assert (first, last) == (len(walked) + 1, len(walked) + len(ids))
        assert ("First page" in page.text) == (pages > 0)
        walked += ids
        pages += 1
        following = _NEXT.search(page.text)
        url = html.unescape(following.group(1)) if following else None
        assert (url is None) == (len(walked) == total)
    assert pages >= 2 and walked == sorted(walked) and len(set(walked)) == len(walked)
    assert [task_id for task_id in walked if task_id.startswith(PREFIX)] == scheduled

    # The rows say what the describe endpoint says, next runs included.
    last_page = browser_like.get(LIST, params={"after": scheduled[-2]})
    body = {
        "cron": f"{COUNT - 1} 3 {1 + (COUNT - 1) % 28} {1 + (COUNT - 1) % 12} *",
        "timezone": "Asia/Tokyo",
    }
    described = api.post(f"/api/schedules/{scheduled[-1]}/describe", json=body).json()
    assert _TASK_CELL.findall(last_page.text) == [scheduled[-1]]
    assert html.escape(described["description"], quote=False) in last_page.text
    for run in described["nextRuns"]:
        assert f'<time datetime="{run}">' in last_page.text

    beyond = browser_like.get(LIST, params={"after": scheduled[-1]})
    assert beyond.status_code == 200 and "No more schedules" in beyond.text
