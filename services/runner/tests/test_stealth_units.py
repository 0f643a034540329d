"""The parts of stealth that need no browser: which agents a stealth run may rotate, the
``stealth`` block as stored, and the wording of block-page reasons."""

from __future__ import annotations

import random

from figranium_common.models import StealthOptions, Task
from figranium_runner import identity
from figranium_runner.blockpage import PageSigns, block_reason
from figranium_runner.humanize import MAX_GLIDE_S, MAX_PAUSE_S, Humanizer
from services.runner.tests.test_identity import Pick


def test_stealth_rotates_only_agents_a_chromium_passes_for() -> None:
    task = Task.model_validate({"rotateUserAgents": True, "stealth": {"fatigue": True}})
    picked = {
        identity.context_options(task, [], Pick(i))["user_agent"]
        for i in range(len(identity.CHROMIUM_USER_AGENTS))
    }
    assert picked == {ua.user_agent for ua in identity.CHROMIUM_USER_AGENTS}
    assert all("Firefox" not in ua and "Version/" not in ua for ua in picked)


def test_the_stealth_block_keeps_what_it_is_given() -> None:
    given = {**{name: False for name in StealthOptions.model_fields}, "futureOption": 3}
    task = Task.model_validate({"stealth": given})
    assert not task.stealth.enabled
    assert task.dump()["stealth"] == given
    assert Task.model_validate({"stealth": {"overscroll": True}}).stealth.enabled
    assert "stealth" not in Task().dump()


def test_block_reasons_as_figranium_words_them() -> None:
    url = "https://shop.test/"
    assert block_reason(PageSigns(403, url)) == "main document returned HTTP 403"
    assert block_reason(PageSigns(429, url, solved=True)) == "main document returned HTTP 429"
    challenge = "https://shop.test/cdn-cgi/challenge-platform/h/b"
    assert block_reason(PageSigns(200, challenge)) == "Cloudflare challenge URL detected"
    assert block_reason(PageSigns(200, challenge, solved=True)) is None
    assert block_reason(PageSigns(200, url, widget=True)) == "unresolved CAPTCHA challenge detected"
    assert block_reason(PageSigns(200, url, widget=True, solved=True)) is None
    cloudflare = PageSigns(200, url, title="Attention Required! | Cloudflare")
    assert block_reason(cloudflare) == "Cloudflare access challenge detected"
    denied = PageSigns(200, url, title="Access Denied", text="Reference #18.2f", solved=True)
    assert block_reason(denied) == "access-denied block page detected"
    human = PageSigns(200, url, text="Please verify you are human: complete the security check")
    assert block_reason(human) == "human-verification challenge detected"
    assert block_reason(PageSigns(200, url, title="Access denied")) is None  # no block marks
    assert block_reason(PageSigns(None, url, title="Shop", text="Fresh pears")) is None


def test_paths_and_pauses_are_bounded() -> None:
    glide = Humanizer(StealthOptions(cursorGlide=True, fatigue=True), random.Random(4))
    path = glide.path((0, 0), (1000, 600))
    assert 25 <= len(path) <= 88 and path[-1] == (1000, 600)
    assert MAX_GLIDE_S / len(path) < 0.032  # a long glide is sped up to its cap
    glide.actions = 10_000  # a very long, very tired run
    assert all(glide.delay_s(5_000) <= MAX_PAUSE_S for _ in range(50))
    quick = Humanizer(StealthOptions(randomizeClicks=True), random.Random(4))
    assert 8 <= len(quick.path((0, 0), (100, 100))) <= 13
