"""A person's mouse for a run with Figranium's ``stealth`` options: where the cursor is,
how it travels, where a click lands, how long the pauses are.

Everything goes through Playwright's mouse, so the page sees real (trusted) ``mousemove``,
``mousedown`` and ``click`` events. Every random choice comes from the run's seeded
``random.Random``: the same seed makes the same path. Every pause is capped, so that a run
with all options on takes seconds longer, never minutes.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass

from playwright.async_api import FloatRect, Page

from figranium_common.models import StealthOptions

Point = tuple[float, float]

# Caps that keep a humanized run close to an ordinary one in time.
MAX_PAUSE_S = 1.0  # any one pause between two steps
MAX_GLIDE_S = 0.6  # one cursor glide, all its steps together
MAX_FATIGUE = 2.0  # how much slower the last actions of a long run get
DEFAULT_VIEWPORT = (1280, 800)


def _ease(t: float) -> float:
    """Ease in and out: slow at the start and the end of a movement, as a hand is."""
    return 2 * t * t if t < 0.5 else 1 - (-2 * t + 2) ** 2 / 2


@dataclass
class Humanizer:
    """The mouse of one run's page, and the options it follows."""

    options: StealthOptions
    rng: random.Random
    position: Point | None = None  # where the cursor is; None until it first moves
    actions: int = 0  # humanized actions so far, for ``fatigue``

    def uniform(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)

    def next_action(self) -> None:
        """One more action done: with ``fatigue``, the pauses after it are longer."""
        self.actions += 1

    def delay_s(self, base_ms: float) -> float:
        """A pause around ``base_ms``, as Figranium's: up to 140 ms more, longer as the run
        tires with ``fatigue`` (capped at twice as long), now and then a micro-pause."""
        ms = base_ms + self.uniform(0, 140)
        if self.options.fatigue:
            ms *= min(MAX_FATIGUE, 1 + self.actions * 0.1)
            if self.rng.random() < 0.08:
                ms += self.uniform(120, 480)
        return min(ms / 1000, MAX_PAUSE_S)

    async def pause(self, base_ms: float) -> None:
        await asyncio.sleep(self.delay_s(base_ms))

    @staticmethod
    def viewport(page: Page) -> tuple[int, int]:
        size = page.viewport_size
        return (size["width"], size["height"]) if size else DEFAULT_VIEWPORT

    def point_in(self, box: FloatRect) -> Point:
        """Where a click on ``box`` lands: a random point away from its edges with
        ``randomizeClicks`` (20 % of each side as padding, at least 2 px, never past the
        middle), else its centre."""
        if not self.options.randomizeClicks:
            return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        pad_x = min(max(2.0, box["width"] * 0.2), box["width"] * 0.4)
        pad_y = min(max(2.0, box["height"] * 0.2), box["height"] * 0.4)
        x = box["x"] + pad_x + self.rng.random() * max(0.0, box["width"] - 2 * pad_x)
        y = box["y"] + pad_y + self.rng.random() * max(0.0, box["height"] - 2 * pad_y)
        return x, y

    def path(self, start: Point, target: Point) -> list[Point]:
        """The points a move from ``start`` to ``target`` passes: a quadratic curve whose
        bend is random, with a little jitter, eased with ``cursorGlide``."""
        distance = math.dist(start, target)
        glide = self.options.cursorGlide
        if glide:
            steps = max(25, min(80, int(distance / 8))) + self.rng.randrange(8)
        else:
            steps = 8 + self.rng.randrange(6)
        bend = min(60.0, distance * 0.15)
        ctrl = (
            (start[0] + target[0]) / 2 + (self.rng.random() - 0.5) * bend,
            (start[1] + target[1]) / 2 + (self.rng.random() - 0.5) * bend,
        )
        jitter = 0.6 if glide else 2.0
        points: list[Point] = []
        for i in range(1, steps + 1):
            t = _ease(i / steps) if glide else i / steps
            inv = 1 - t
            x = inv * inv * start[0] + 2 * inv * t * ctrl[0] + t * t * target[0]
            y = inv * inv * start[1] + 2 * inv * t * ctrl[1] + t * t * target[1]
            if i < steps:  # the last point is the target itself
                x += (self.rng.random() - 0.5) * jitter
                y += (self.rng.random() - 0.5) * jitter
            points.append((x, y))
        return points

    def _start(self, page: Page, target: Point) -> Point:
        """Where a move begins: where the cursor is with ``cursorGlide``, else (as
        Figranium) a point near the target, reached at once."""
        if self.options.cursorGlide:
            if self.position is None:
                width, height = self.viewport(page)
                return width / 2, height / 2
            return self.position
        return (
            target[0] + (self.rng.random() - 0.5) * 120,
            target[1] + (self.rng.random() - 0.5) * 120,
        )

    async def move_to(self, page: Page, target: Point) -> None:
        """Move the cursor to ``target`` along :meth:`path`; a glide takes at most
        ``MAX_GLIDE_S``."""
        start = self._start(page, target)
        if self.options.cursorGlide and self.position is None:
            await page.mouse.move(*start)
        points = self.path(start, target)
        step_cap = MAX_GLIDE_S / len(points)
        for x, y in points:
            await page.mouse.move(x, y)
            if self.options.cursorGlide:
                await asyncio.sleep(min(self.uniform(0.014, 0.032), step_cap))
        self.position = target

    async def click_at(
        self, page: Page, point: Point, *, button: str = "left", count: int = 1
    ) -> None:
        """Press and release at ``point`` (the cursor is there), holding the button as long
        as a finger does."""
        hold_ms = self.delay_s(20) * 1000
        if button == "right":
            await page.mouse.click(*point, button="right", delay=hold_ms)
        else:
            await page.mouse.click(*point, click_count=count, delay=hold_ms)

    async def idle(self, page: Page, seconds: float) -> None:
        """``idleMovements``: the cursor drifts about the page for ``seconds`` (a ``wait``),
        in small steps with short rests; the wait ends on time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        width, height = self.viewport(page)
        x, y = self.position or (width / 2, height / 2)
        for _ in range(3 + self.rng.randrange(3)):
            goal = (self.rng.random() * width, self.rng.random() * height)
            steps = 20 + self.rng.randrange(20)
            for step in range(steps):
                if loop.time() >= deadline:
                    break
                x += (goal[0] - x) / (steps - step)
                y += (goal[1] - y) / (steps - step)
                await page.mouse.move(x, y)
                self.position = (x, y)
                await asyncio.sleep(min(self.uniform(0.005, 0.015), deadline - loop.time()))
            if loop.time() < deadline and self.rng.random() < 0.4:
                await asyncio.sleep(min(self.uniform(0.2, 0.8), deadline - loop.time()))
        rest = deadline - loop.time()
        if rest > 0:
            await asyncio.sleep(rest)
