"""The console's screenshots in docs/console/: ``make console-shots``.

    python -m benchmarks.console_shots [--output docs/console]

Starts a private stack (``benchmarks.stack``: PostgreSQL, NATS, a gateway and a runner)
and the benchmark's local page, saves a few tasks through the API, runs one (its final
screenshot lands in the captures bucket) and schedules one, then signs in with Playwright
and saves each main page, light mode, 1280x800, as a PNG. A page not built yet (404) is
skipped with a notice. Not part of ``make test``: pictures are for people, not asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, ViewportSize, sync_playwright

from benchmarks.bench import page_server
from benchmarks.stack import API_KEY, BenchStack
from figranium_runner.browser import CHROMIUM_ARGS, find_headless_chromium

REPO = Path(__file__).resolve().parent.parent
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TASK = "search_catalogue"


def tasks(page_url: str) -> list[dict[str, Any]]:
    """A handful of tasks, the first one runnable against the local page."""
    first: dict[str, Any] = {
        "id": TASK,
        "name": "Search the catalogue",
        "url": page_url,
        "actions": [
            {"type": "type", "selector": "#q", "value": "{$query}"},
            {"type": "click", "selector": "#go"},
        ],
        "variables": {"query": {"type": "string", "value": "lamps"}},
        "extractionScript": (
            "return Array.from(document.querySelectorAll('#items li')).map(li => li.textContent)"
        ),
    }
    others = [
        ("daily_prices", "Daily prices", "https://shop.example/prices"),
        ("news_headlines", "News headlines", "https://news.example/"),
        ("login_check", "Login check", "https://app.example/login"),
    ]
    return [first] + [{"id": i, "name": n, "url": u, "actions": []} for i, n, u in others]


def seed(client: httpx.Client, page_url: str) -> str:
    """Save the tasks, schedule one, run the first; the run's execution id."""
    for task in tasks(page_url):
        client.post("/api/tasks", json=task).raise_for_status()
    schedule = {"enabled": True, "cron": "30 6 * * 1-5", "timezone": "Europe/Berlin"}
    client.post("/api/schedules/daily_prices", json=schedule).raise_for_status()
    run = client.post(f"/api/tasks/{TASK}/api", json={}, timeout=120)
    run.raise_for_status()
    execution_id = (
        run.json().get("executionId")
        or client.get("/api/executions", params={"taskId": TASK}).json()["executions"][0]["id"]
    )
    return str(execution_id)


def shots(execution_id: str) -> dict[str, str]:
    """File name (without .png) to the page it shows."""
    return {
        "tasks": "/",
        "editor": f"/console/tasks/{TASK}",
        "executions": "/console/executions",
        "execution": f"/console/executions/{execution_id}",
        "schedules": "/console/schedules",
        "settings": "/console/settings",
    }


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/console/sign-in")
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def photograph(base: str, execution_id: str, output: Path) -> list[Path]:
    chromium = find_headless_chromium(
        os.environ.get("CHROMIUM_HEADLESS_PATH"), os.environ.get("CHROMIUM_PATH")
    )
    saved: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
        page = context.new_page()
        sign_in(page, base)
        for name, path in shots(execution_id).items():
            answer = page.goto(f"{base}{path}", wait_until="networkidle")
            if answer is None or answer.status == 404:
                print(f"[shots] {path}: not built yet (404), skipped")
                continue
            target = output / f"{name}.png"
            page.screenshot(path=target)
            saved.append(target)
            print(f"[shots] {target.relative_to(REPO)}: {target.stat().st_size // 1024} KB")
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console_shots")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "console")
    args = parser.parse_args(argv)
    output: Path = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="figranium-shots-"))
    try:
        with page_server() as page_port, BenchStack(workdir) as stack:
            stack.start_gateway()
            stack.start_runner(1)
            headers = {"x-api-key": API_KEY}
            with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=30) as client:
                execution_id = seed(client, f"http://127.0.0.1:{page_port}/")
            photograph(stack.gateway_url, execution_id, output)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
