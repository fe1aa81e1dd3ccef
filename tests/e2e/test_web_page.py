"""A user opens the page of the local stack in a real browser (Debian's Chromium) and finds similar images.

Playwright drives ``/usr/bin/chromium`` (``tests/e2e/conftest.py``); a screenshot of each page state is
saved under ``artifacts/e2e/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from localmode.stack import LocalStack
from tests.e2e.conftest import opened, screenshot, wait_for_thumbnails
from tests.localmode_world import query_image, stack_with

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(
    corpus_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    index_path = tmp_path_factory.mktemp("index") / "index.sqlite"
    with stack_with(corpus_dir, model_dir=model_dir, index_path=index_path) as running:
        yield running


@pytest.fixture
def page(browser: Browser, stack: LocalStack) -> Iterator[Page]:
    yield from opened(browser, stack)


def test_a_reframed_photo_finds_its_original_first(page: Page, corpus_dir: Path, tmp_path: Path) -> None:
    query = tmp_path / "my-china.jpg"
    query.write_bytes(query_image(corpus_dir, "china"))
    expect(page.locator("#health")).to_contain_text("6 images indexed")

    page.set_input_files("#file", str(query))

    first = page.locator("#results li").first
    expect(first).to_have_attribute("data-key", "photos/china.jpg")
    expect(first.locator(".label")).to_have_text("photos")
    expect(page.locator("#results li")).to_have_count(6)
    expect(page.locator("#query-image")).to_have_attribute("alt", "Query image: my-china.jpg")
    wait_for_thumbnails(page)
    screenshot(page, "search.png")


def test_a_result_searches_for_more_like_it_from_the_keyboard(
    page: Page, corpus_dir: Path, tmp_path: Path
) -> None:
    query = tmp_path / "rings.jpg"
    query.write_bytes(query_image(corpus_dir, "rings"))
    page.set_input_files("#file", str(query))
    expect(page.locator("#results li").first).to_have_attribute("data-key", "patterns/rings.png")

    page.locator("#results li button").first.focus()
    page.keyboard.press("Enter")

    expect(page.locator("#query-caption")).to_contain_text(
        "patterns/rings.png (more like this indexed image)"
    )
    expect(page.locator("#results li")).to_have_count(5)  # the image itself is left out
    expect(page.locator('#results li[data-key="patterns/rings.png"]')).to_have_count(0)


def test_the_label_filter_restricts_results(page: Page, corpus_dir: Path, tmp_path: Path) -> None:
    query = tmp_path / "china.jpg"
    query.write_bytes(query_image(corpus_dir, "china"))
    page.fill("#label", "patterns")
    page.set_input_files("#file", str(query))
    expect(page.locator("#results li")).to_have_count(4)
    assert set(page.locator("#results .label").all_text_contents()) == {"patterns"}


def test_files_that_are_not_images_get_a_clear_message(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#file", str(notes))
    expect(page.locator("#message")).to_contain_text("“notes.txt” is not an image (text/plain)")

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    page.set_input_files("#file", str(broken))
    message = page.locator("#message")
    expect(message).to_contain_text("The API could not use this request")
    expect(message).to_contain_text("[invalid_image]")
    screenshot(page, "error.png")
