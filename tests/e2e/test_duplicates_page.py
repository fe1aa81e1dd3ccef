"""A user sees which results are the same picture, and an image's duplicates side by side, in Chromium.

The local stack holds the page tests' corpus with china.jpg twice more: the same bytes under
``archive/`` (an exact duplicate) and re-encoded as a PNG (a near duplicate: the same pixels in other
bytes, similarity 1.0). The query is a reframed china.jpg, to which all three are equally similar.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from localmode.stack import LocalStack
from simsearch.preprocess import ImageLimits, decode_image
from tests.e2e.conftest import opened, screenshot, wait_for_thumbnails
from tests.image_factories import encode, reframed
from tests.localmode_world import stack_with, write_corpus
from tests.query_fixtures import pictures

pytestmark = pytest.mark.e2e

EXACT = {"photos/china.jpg", "archive/china.jpg"}
NEAR = "photos/china-again.png"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("with-duplicates")
    keys = write_corpus(folder)
    china = (folder / keys["china"]).read_bytes()
    (folder / "archive").mkdir()
    (folder / "archive" / "china.jpg").write_bytes(china)
    (folder / NEAR).write_bytes(encode(decode_image(china, limits=ImageLimits.deployed()).rgb, "PNG"))
    index_path = tmp_path_factory.mktemp("index") / "index.sqlite"
    with stack_with(folder, model_dir=model_dir, index_path=index_path) as running:
        yield running


@pytest.fixture
def page(browser: Browser, stack: LocalStack) -> Iterator[Page]:
    yield from opened(browser, stack)


def china_query(tmp_path: Path) -> str:
    query = tmp_path / "china-query.jpg"
    query.write_bytes(reframed(pictures()["china"], keep=0.8, scale=0.6, quality=70))
    return str(query)


def test_results_name_their_copies_and_an_images_duplicates_show_side_by_side(
    page: Page, tmp_path: Path
) -> None:
    expect(page.locator("#health")).to_contain_text("8 images indexed")
    page.set_input_files("#file", china_query(tmp_path))

    results = page.locator("#results li.result")
    expect(results).to_have_count(8)
    keys = [results.nth(n).get_attribute("data-key") for n in range(3)]
    assert set(keys) == {*EXACT, NEAR}  # the same pixels, so the same similarity
    earlier, later = sorted(keys.index(key) for key in EXACT)
    expect(results.nth(later).locator(".duplicate-note")).to_have_text(f"same bytes as #{earlier + 1}")
    expect(page.locator("#results .duplicate-note:not(:empty)")).to_have_count(1)

    page.locator('#results li[data-key="photos/china.jpg"] button.link').click()

    expect(page.locator("#duplicates-view")).to_be_visible()
    expect(page.locator("#duplicates-summary")).to_contain_text(
        "photos/china.jpg: 1 exact duplicate (same bytes), 1 near duplicate "
        "(similarity ≥ 0.875 and pixels matching ≥ 0.959)"
    )
    members = page.locator("#clusters li.cluster li.member")
    expect(members).to_have_count(3)
    assert members.evaluate_all("items => items.map(i => [i.dataset.kind, i.dataset.key])") == [
        ["image", "photos/china.jpg"],
        ["exact", "archive/china.jpg"],
        ["near", NEAR],
    ]
    expect(members.nth(2).locator(".kind")).to_have_text("near · 1.000 · pixels 1.000")  # the same pixels
    wait_for_thumbnails(page, "#clusters")
    screenshot(page, "duplicates.png")


def test_folding_exact_duplicates_leaves_one_result_per_content(page: Page, tmp_path: Path) -> None:
    page.check("#collapse")
    page.set_input_files("#file", china_query(tmp_path))

    expect(page.locator("#results li.result")).to_have_count(7)
    expect(page.locator("#results .duplicate-note:not(:empty)")).to_have_text(["+1 copy folded"])


def test_the_duplicates_of_all_results_come_one_cluster_per_picture(page: Page, tmp_path: Path) -> None:
    page.set_input_files("#file", china_query(tmp_path))
    expect(page.locator("#results li.result")).to_have_count(8)

    page.click("#find-duplicates")

    expect(page.locator("#duplicates-summary")).to_have_text(
        "1 of the 8 results have duplicates (near: similarity ≥ 0.875 and pixels matching ≥ 0.959)."
    )
    expect(page.locator("#clusters li.cluster")).to_have_count(1)
    kinds = page.locator("#clusters li.member").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert sorted(kinds) == ["exact", "image", "near"]
    screenshot(page, "duplicates-of-results.png")

    page.fill("#near-threshold", "0.999")
    page.click("#duplicates-form button[type=submit]")
    expect(page.locator("#duplicates-summary")).to_contain_text("similarity ≥ 0.999")
    expect(page.locator("#clusters li.member")).to_have_count(3)  # the PNG is 1.0: still near
