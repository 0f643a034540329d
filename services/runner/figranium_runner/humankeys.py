"""A person's keyboard for a run with Figranium's typing options (``allowTypos``,
``naturalTyping``, ``fatigue``): one key at a time, with a wrong key now and then taken
back with Backspace, and pauses that follow the text.

The pauses are Figranium's, each capped, and all together capped per ``type`` action
(``MAX_TYPING_PAUSES_S``): past the cap the rest is typed key by key without pauses, so a
long text costs seconds, never minutes.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import Keyboard

from figranium_runner.humanize import Humanizer

MAX_TYPING_PAUSES_S = 6.0
_TYPO_KEYS = "qwertyuiopasdfghjklzxcvbnm"
_PUNCTUATION = frozenset(".,!?;:")


class _Budget:
    """What is left of one action's pauses."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    async def sleep(self, seconds: float) -> None:
        granted = max(0.0, min(seconds, self.left))
        self.left -= granted
        if granted:
            await asyncio.sleep(granted)


async def type_like_a_person(keyboard: Keyboard, text: str, human: Humanizer) -> None:
    """Type ``text`` into the focused element as Figranium's ``humanType`` does."""
    options = human.options
    natural = options.naturalTyping
    budget = _Budget(MAX_TYPING_PAUSES_S)
    burst_limit = int(human.uniform(6, 16)) if natural else None
    base_ms = human.uniform(12, 55) if natural else human.uniform(25, 80)
    typo_chance = (0.1 if natural else 0.04) if options.allowTypos else 0.0
    burst = 0
    for char in text:
        if burst_limit is not None and burst >= burst_limit:
            await budget.sleep(human.uniform(0.06, 0.18))
            burst = 0
        if human.rng.random() < typo_chance:
            await _typo(keyboard, human, budget)
        extra_ms = human.uniform(60, 150) if char in _PUNCTUATION else human.uniform(0, 40)
        if options.fatigue and human.rng.random() < 0.06:
            extra_ms += human.uniform(90, 200)
        await keyboard.type(char)
        await budget.sleep((base_ms + extra_ms) / 1000)
        burst += 1
        if natural and char == " ":
            await budget.sleep(human.uniform(0.02, 0.08))


async def _typo(keyboard: Keyboard, human: Humanizer, budget: _Budget) -> None:
    """A slip: a wrong letter, noticed and erased; sometimes twice."""
    wrong = human.rng.choice(_TYPO_KEYS)
    await keyboard.type(wrong)
    await budget.sleep(human.uniform(0.04, 0.16))
    if human.rng.random() < 0.5:
        await budget.sleep(human.uniform(0.06, 0.18))
    await keyboard.press("Backspace")
    if human.rng.random() < 0.3:
        await keyboard.type(wrong)
        await budget.sleep(human.uniform(0.04, 0.16))
        await keyboard.press("Backspace")
