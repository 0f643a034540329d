"""Cleaning and checking what the models answer, before anything reaches a user."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup

from figranium_gateway.ai.chain import AnswerRejected
from figranium_gateway.routes.generate import clean_selector, count_matches, strip_fences

PAGE = BeautifulSoup(
    '<ul id="items"><li>apple</li><li class="x">banana</li></ul><input name="q">',
    "html.parser",
)


@pytest.mark.parametrize(
    ("answer", "selector"),
    [
        ("#items li", "#items li"),
        ("```css\n#items li\n```", "#items li"),
        ("```\n#items > li.x\n```", "#items > li.x"),
        ("`input[name=q]`", "input[name=q]"),
        ('"#items"', "#items"),
        ("Selector: #items li\nThis selects every fruit.", "#items li"),
        ("  css selector: li.x  ", "li.x"),
    ],
)
def test_selectors_are_cleaned(answer: str, selector: str) -> None:
    assert clean_selector(answer) == selector


def test_selectors_are_checked_against_the_page() -> None:
    assert count_matches(PAGE, "#items li") == 2
    assert count_matches(PAGE, "input[name='q']") == 1
    assert count_matches(PAGE, "#nothing") == 0
    for bad in ("", "li[", "//ul/li", "x" * 600):
        with pytest.raises(AnswerRejected):
            count_matches(PAGE, bad)


def test_scripts_lose_their_fences_only() -> None:
    assert strip_fences("```javascript\nreturn 1;\n```") == "return 1;"
    assert strip_fences("```js\nconst a = `x`;\nreturn a;\n```") == "const a = `x`;\nreturn a;"
    assert strip_fences("return document.title") == "return document.title"
