"""The console's captures gallery, cabinets and headful viewer page: the forms and their
refusals over HTTP, and one walk through them in Chromium."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.cabinet_helpers import items, object_names
from tests.integration.captures_helpers import capture_names, indexed, put_captures
from tests.integration.console_browser import SIGN_IN, SharedChromium, accessible, console_page
from tests.integration.pages import add_item
from tests.integration.stack import API_KEY, Stack, wait_until

CAPTURES = "/console/captures"
CABINETS = "/console/cabinets"


def _token(client: httpx.Client) -> dict[str, str]:
    return {"csrf_token": client.cookies["figranium_csrf"]}


def _nats_url(stack: tuple[Stack, httpx.Client]) -> str:
    return stack[0].env["NATS_URL"]


def test_the_gallery_pages_links_and_deletes_captures(
    stack: tuple[Stack, httpx.Client], browser_like: httpx.Client
) -> None:
    run = f"exec_{uuid.uuid4().hex[:10]}"
    # Newest last: each put gets a later modification time.
    names = [f"{run}_agent_{1000 + n}.png" for n in range(25)] + [f"{run}_agent_2000.webm"]
    put_captures(stack[0], names)
    first = browser_like.get(CAPTURES)
    assert first.status_code == 200, first.text
    shown = re.findall(r'<a href="/captures/([^"]+)">\1</a>', first.text)
    assert len(shown) == 24 and shown[0] == names[-1]
    assert f'<video src="/captures/{names[-1]}"' in first.text
    assert f'alt="Screenshot of run {run}, ' in first.text
    assert f'href="/console/executions/{run}"' in first.text
    # Keyset pages: the next one starts after the last capture shown.
    next_link = re.search(r'<a href="(/console/captures\?before=[^"]+)" rel="next">', first.text)
    assert next_link is not None, first.text
    second = browser_like.get(next_link.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and 'rel="first"' in second.text
    on_second = re.findall(r'<a href="/captures/([^"]+)">\1</a>', second.text)
    assert on_second[:2] == [names[1], names[0]]
    before = next_link.group(1).split("before=", 1)[1]
    bad = browser_like.get(CAPTURES, params={"before": "yesterday"})
    assert bad.status_code == 400 and "before is a cursor" in bad.text

    doomed = f"{CAPTURES}/{names[1]}/delete"
    refused = browser_like.post(doomed, data={"before": before})
    assert refused.status_code == 403 and refused.json()["error"] == "CSRF_TOKEN_MISSING"
    assert names[1] in capture_names(_nats_url(stack))
    deleted = browser_like.post(doomed, data={**_token(browser_like), "before": before})
    assert deleted.status_code == 303
    assert deleted.headers["location"] == f"{CAPTURES}?before={before}"
    assert names[1] not in capture_names(_nats_url(stack))
    assert indexed(stack[0].env["DATABASE_URL"], [names[1]]) == 0
    again = browser_like.post(doomed, data=_token(browser_like))
    assert again.status_code == 404 and "no capture" in again.text
    odd = browser_like.post(f"{CAPTURES}/a%20b/delete", data=_token(browser_like))
    assert odd.status_code == 400 and "capture names are" in odd.text


def test_cabinet_forms_create_upload_and_delete(
    stack: tuple[Stack, httpx.Client], api: httpx.Client, browser_like: httpx.Client
) -> None:
    name = f"Console {uuid.uuid4().hex[:8]}"
    assert browser_like.post(CABINETS, data={"name": name}).status_code == 403
    empty = browser_like.post(CABINETS, data={**_token(browser_like), "name": "  "})
    assert empty.status_code == 400 and "a cabinet name is required" in empty.text
    created = browser_like.post(CABINETS, data={**_token(browser_like), "name": name})
    assert created.status_code == 303, created.text
    page_url = created.headers["location"]
    cabinet_id = page_url.rsplit("/", 1)[-1]
    taken = browser_like.post(CABINETS, data={**_token(browser_like), "name": name.upper()})
    assert taken.status_code == 400 and "already has the name" in taken.text
    assert name in browser_like.get(CABINETS).text

    # The token is the upload form's first field; without it (or after the file) the file
    # is refused before it is read.
    files = {"file": ("notes.txt", b"console upload", "text/plain")}
    before = object_names(_nats_url(stack))
    assert browser_like.post(f"{page_url}/items", files=files).status_code == 403
    late = httpx.Client(base_url=str(browser_like.base_url), cookies=browser_like.cookies)
    with late:
        body = (
            '--b\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\nx\r\n'
            f'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            f"{browser_like.cookies['figranium_csrf']}\r\n--b--\r\n"
        )
        answer = late.post(
            f"{page_url}/items",
            content=body.encode(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert answer.status_code == 403
    assert object_names(_nats_url(stack)) == before and items(api, cabinet_id) == []
    no_file = browser_like.post(
        f"{page_url}/items", data=_token(browser_like), files={"note": (None, "no file")}
    )
    assert no_file.status_code == 400 and "no file part" in no_file.text

    stored = browser_like.post(f"{page_url}/items", data=_token(browser_like), files=files)
    assert stored.status_code == 303 and stored.headers["location"] == page_url
    [item] = items(api, cabinet_id)
    assert item["name"] == "notes.txt" and item["size"] == len(b"console upload")
    page = browser_like.get(page_url)
    download = f"/api/cabinets/{cabinet_id}/items/{item['id']}/download"
    assert "notes.txt" in page.text and f'href="{download}"' in page.text
    assert browser_like.get(download).content == b"console upload"

    item_delete = f"{page_url}/items/{item['id']}/delete"
    assert browser_like.post(item_delete).status_code == 403
    assert browser_like.post(item_delete, data=_token(browser_like)).status_code == 303
    assert items(api, cabinet_id) == []

    confirm = browser_like.get(f"{page_url}/delete")
    assert confirm.status_code == 200 and 'name="targetCabinetId"' in confirm.text
    same = browser_like.post(
        f"{page_url}/delete", data={**_token(browser_like), "targetCabinetId": cabinet_id}
    )
    assert same.status_code == 400 and "choose a different" in same.text
    gone = browser_like.post(
        f"{page_url}/delete",
        data={**_token(browser_like), "targetCabinetId": "cab_basic", "mode": "migrate"},
    )
    assert gone.status_code == 303 and gone.headers["location"] == CABINETS
    missing = browser_like.get(page_url)
    assert missing.status_code == 404 and "No such cabinet" in missing.text
    basic = browser_like.get(f"{CABINETS}/cab_basic/delete")
    assert "cannot be deleted" in basic.text and 'name="targetCabinetId"' not in basic.text


def test_without_a_headful_runner_the_viewer_says_so(browser_like: httpx.Client) -> None:
    page = browser_like.get("/console/headful")
    assert page.status_code == 200 and "No headful runner is live" in page.text
    assert browser_like.post("/console/headful/open").status_code == 403
    opened = browser_like.post("/console/headful/open", data=_token(browser_like))
    assert opened.status_code == 503 and "no headful runner" in opened.text.lower()
    assert "location" not in opened.headers


def test_a_person_browses_captures_and_keeps_a_file_in_a_cabinet(
    api: httpx.Client, site: str, chromium: SharedChromium, tmp_path: Path
) -> None:
    task_id = "console-files-task"
    task = {
        "id": task_id,
        "name": "Console files",
        "url": f"{site}/form",
        "actions": [*add_item("plum"), {"type": "screenshot", "label": "plum"}],
    }
    assert api.post("/api/tasks", json=task).status_code == 200
    run = api.post(f"/api/tasks/{task_id}/api", json={})
    assert run.status_code == 200, run.text
    execution_id = run.json()["executionId"]
    wait_until(
        lambda: api.get("/api/data/captures", params={"runId": execution_id}).json()["captures"],
        30,
        "the screenshot to be stored",
    )
    upload_path = tmp_path / "report.csv"
    upload_path.write_bytes(b"a,b\n1,2\n")
    name = f"Shelf {uuid.uuid4().hex[:6]}"
    base = str(api.base_url)
    axe = Axe()
    with console_page(chromium, viewport={"width": 390, "height": 844}) as (page, violations):
        page.goto(base + SIGN_IN)
        page.get_by_label("API key").fill(API_KEY)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()

        page.goto(base + CAPTURES)
        shots = page.get_by_role("img", name=re.compile(f"^Screenshot of run {execution_id}"))
        expect(shots.first).to_be_visible()
        widths = shots.evaluate_all(
            "imgs => Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth)))"
        )
        assert widths and all(width > 0 for width in widths), widths
        accessible(page, axe)

        page.get_by_role("link", name="Cabinets").click()
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_role("button", name="Create", exact=True).click()
        expect(page.get_by_role("heading", name=name)).to_be_visible()
        page.get_by_label("File to upload").set_input_files(upload_path)
        page.get_by_role("button", name="Upload", exact=True).click()
        table = page.get_by_role("table", name="Items, newest first")
        expect(table.get_by_role("rowheader", name="report.csv")).to_be_visible()
        accessible(page, axe)
        with page.expect_download() as downloading:
            page.get_by_role("link", name="Download report.csv").click()
        saved = tmp_path / "downloaded.csv"
        downloading.value.save_as(saved)
        assert saved.read_bytes() == upload_path.read_bytes()
        page.get_by_role("button", name="Delete report.csv").click()
        expect(page.get_by_text("This cabinet is empty.")).to_be_visible()

        page.get_by_role("link", name="Delete this cabinet").click()
        accessible(page, axe)
        page.get_by_role("button", name="Delete", exact=True).click()
        expect(page.get_by_role("heading", name="Cabinets", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name=name)).to_have_count(0)
        accessible(page, axe)
    assert not violations, violations
