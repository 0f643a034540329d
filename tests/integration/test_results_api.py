"""Results as Figranium's clients read them, through the whole stack: the page's HTML
without a script, scrape's fields, and the data of a script that throws."""

from __future__ import annotations

import httpx


def test_a_run_without_a_script_answers_the_page_html(api: httpx.Client, site: str) -> None:
    answer = api.post("/agent", json={"url": f"{site}/form"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert '<ul id="items"><li>apple</li>' in body["html"]
    stored = api.get(f"/api/executions/{body['executionId']}").json()["execution"]["result"]
    assert stored["html"] == body["html"]


def test_scrape_answers_title_links_and_the_selected_html(api: httpx.Client, site: str) -> None:
    answer = api.post("/scrape", json={"url": f"{site}/form", "selector": "#items"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["html"] == '<ul id="items"><li>apple</li><li>banana</li></ul>'
    assert body["title"] == "Form"
    assert body["url"] == f"{site}/form"
    assert body["links"] == []
    assert body["selector_used"] == "#items" and body["is_partial"] is True


def test_a_script_that_throws_answers_its_message_as_data(api: httpx.Client, site: str) -> None:
    answer = api.post(
        "/agent", json={"url": f"{site}/form", "extractionScript": "throw new Error('no rows')"}
    )
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "RUN_FAILED" and body["outcome"] == "error"
    assert body["data"] == "Extraction script error: no rows"
    assert body["details"] == "Extraction script error: no rows"
