"""Figranium's ``stealth`` options through a real Chromium: the mouse and keyboard events a
page sees, drawn from a seeded random generator so that each test repeats exactly."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from figranium_common.models import RunResult, Task
from figranium_runner.engine import Limits, execute
from services.runner.tests.stealth_site import serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

# #btn on the events page: left 700, top 420, 160 x 60.
BUTTON_CENTRE = (780.0, 450.0)
TEXT = "quick brown fox, twice."


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serve() as url:
        yield url


async def run(
    context: BrowserContext,
    pages: str,
    stealth: dict[str, bool],
    actions: list[Any],
    seed: int,
    extraction: str | None = None,
) -> tuple[RunResult, list[dict[str, Any]]]:
    """The task on the events page; its result and the events the page saw."""

    async def emit(line: str) -> None:
        pass

    page = await context.new_page()
    task = {"url": f"{pages}/events", "stealth": stealth, "actions": actions}
    if extraction:
        task["extractionScript"] = extraction
    result, _ = await execute(
        page,
        Task.model_validate(task),
        {},
        execution_id="exec_human",
        limits=Limits(allow_private=True, default_timeout_ms=3000),
        emit=emit,
        rng=random.Random(seed),
    )
    seen: list[dict[str, Any]] = await page.evaluate("window.seen")
    await page.close()
    return result, seen


def of(seen: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in seen if event["type"] == kind]


def moves_before_click(seen: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The cursor's positions up to the first press (without the move to 0, 0 Chromium
    makes of itself when a page loads)."""
    first_click = next(i for i, event in enumerate(seen) if event["type"] == "mousedown")
    moves = [(e["x"], e["y"]) for e in seen[:first_click] if e["type"] == "mousemove"]
    return [point for point in moves if point != (0, 0)]


CLICK = [{"type": "click", "selector": "#btn"}]


async def test_cursor_glide_travels_a_curve_to_the_button(
    context: BrowserContext, pages: str
) -> None:
    result, seen = await run(context, pages, {"cursorGlide": True}, CLICK, seed=3)
    assert result.outcome == "success", result.logs
    path = moves_before_click(seen)
    assert len(path) >= 25  # in steps, not one jump
    assert path[0] == (640, 400)  # from the middle of the viewport, where it rests
    assert path[-1] == BUTTON_CENTRE
    # Closer to the button at every few steps: a path, not a scatter.
    distances = [abs(x - BUTTON_CENTRE[0]) + abs(y - BUTTON_CENTRE[1]) for x, y in path[::5]]
    assert distances == sorted(distances, reverse=True)
    clicks = of(seen, "click")
    assert [(c["target"], c["trusted"]) for c in clicks] == [("btn", True)]
    # The same seed, the same path.
    _, again = await run(context, pages, {"cursorGlide": True}, CLICK, seed=3)
    assert moves_before_click(again) == path


async def test_randomized_clicks_land_inside_the_box_away_from_its_edges(
    context: BrowserContext, pages: str
) -> None:
    points = set()
    for seed in (1, 2):
        _, seen = await run(context, pages, {"randomizeClicks": True}, CLICK, seed=seed)
        (click,) = of(seen, "click")
        assert click["target"] == "btn"
        assert 700 + 32 <= click["x"] <= 860 - 32 and 420 + 12 <= click["y"] <= 480 - 12
        points.add((click["x"], click["y"]))
    assert len(points) == 2 and BUTTON_CENTRE not in points


async def test_a_dead_click_lands_on_nothing_before_the_real_one(
    context: BrowserContext, pages: str
) -> None:
    # Seed 1 draws a dead click (its first draw is under 0.4).
    result, seen = await run(context, pages, {"deadClicks": True}, CLICK, seed=1)
    assert "Performing neutral dead-click..." in result.logs
    first, second = of(seen, "click")
    assert "target" not in first and first["x"] < 1280 * 0.2 + 10 and first["y"] < 800 * 0.2 + 10
    assert second["target"] == "btn"


async def test_typos_are_taken_back_with_backspace(context: BrowserContext, pages: str) -> None:
    stealth = {"allowTypos": True, "naturalTyping": True, "fatigue": True}
    actions = [{"type": "type", "selector": "#field", "value": TEXT, "typeMode": "append"}]
    value = "return document.getElementById('field').value"
    result, seen = await run(context, pages, stealth, actions, seed=7, extraction=value)
    assert result.outcome == "success", result.logs
    assert result.data == TEXT
    keys = [event["key"] for event in of(seen, "keydown")]
    assert keys[0] == "End"  # appending: to the end of the field first
    erased = keys.count("Backspace")
    assert erased >= 1
    # Every wrong letter is erased by one Backspace: the rest is the text, key by key.
    assert len(keys) - 1 - erased == len(TEXT) + erased
    _, again = await run(context, pages, stealth, actions, seed=7)
    assert [event["key"] for event in of(again, "keydown")] == keys


async def test_overscroll_goes_past_and_comes_back(context: BrowserContext, pages: str) -> None:
    actions = [{"type": "scroll", "value": "600", "key": "200"}]
    # Seed 0 overshoots (its first draw is over 0.5).
    result, seen = await run(context, pages, {"overscroll": True}, actions, seed=0)
    assert result.outcome == "success", result.logs
    positions = [event["y"] for event in of(seen, "scroll")]
    assert positions[-1] == 600 and max(positions) > 600
    _, plain = await run(context, pages, {"cursorGlide": True}, actions, seed=0)
    assert max(event["y"] for event in of(plain, "scroll")) == 600


async def test_idle_movements_wander_while_waiting_and_end_on_time(
    context: BrowserContext, pages: str
) -> None:
    actions = [{"type": "wait", "value": "0.6"}]
    began = time.monotonic()
    result, seen = await run(context, pages, {"idleMovements": True}, actions, seed=5)
    assert result.outcome == "success"
    assert len(of(seen, "mousemove")) >= 10
    assert time.monotonic() - began < 0.6 + 2.0  # the wait, the page load and the run
