"""The browser the page tests share: Debian's Chromium driven by playwright, and what every test does with it.

Playwright drives ``/usr/bin/chromium`` (``make browser`` installs it); playwright's own browser
downloads are never used. Screenshots go to ``artifacts/e2e/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from localmode.stack import LocalStack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "e2e"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def opened(browser: Browser, stack: LocalStack) -> Iterator[Page]:
    """A fresh page on ``stack``'s web page (its own context: no storage shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(stack.url)
    yield page
    context.close()


def wait_for_thumbnails(page: Page, where: str = "#results") -> None:
    """Every image ``where`` has loaded from the (moto) bucket through its presigned URL."""
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{where} img')].every(i => i.complete && i.naturalWidth > 0)"
    )


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
