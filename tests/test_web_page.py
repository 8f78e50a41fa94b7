"""The web page in headless Chromium (Playwright driving the Debian ``chromium``).

Loads the page from a real server, runs a query under ``naive`` and under ``zscore``,
searches by image through the drop zone's file input, asks a question, and saves
screenshots to ``test-artifacts/``. The page must load nothing from elsewhere (no CDN) and
log no errors (a Content-Security-Policy violation would show up here).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

from _server_kit import copy_store, store_records  # noqa: E402

CHROMIUM = os.environ.get("MINDGAP_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUERY = "a dog in the snow"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                                reason=f"no Chromium at {CHROMIUM} (Debian package `chromium`; scripts/install.sh)")


@pytest.fixture(scope="module")
def server(offline_encoder, tmp_path_factory):
    from mindgap.server import create_app, serve_in_thread

    uri = copy_store(offline_encoder, tmp_path_factory.mktemp("web") / "store")
    with serve_in_thread(create_app(uri, encoder=offline_encoder, generator="extractive")) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(server, browser):
    pg = browser.new_page(viewport={"width": 1280, "height": 960})
    pg.problems = []
    pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    origin = server.url
    pg.on("request", lambda r: None if r.url.startswith((origin, "data:", "blob:"))
          else pg.problems.append(f"external request: {r.url}"))
    pg.goto(server.url + "/")
    pg.wait_for_selector("#gap-toggle button[data-gap='zscore']")
    yield pg
    pg.close()


def _search(page, gap: str) -> dict:
    page.click(f"#gap-toggle button[data-gap='{gap}']")
    page.wait_for_selector(f"#results[data-state='done'][data-gap='{gap}']")
    page.wait_for_selector(f"#compare[data-state='done'] .cmp.on[data-gap='{gap}']")
    page.wait_for_function("() => [...document.querySelectorAll('.card.image img')].every(i => i.complete)")
    cards = page.locator("#results .card")
    mods = [cards.nth(i).get_attribute("data-modality") for i in range(cards.count())]
    return {"mods": mods, "images": mods.count("image"), "summary": page.inner_text("#summary-text")}


def test_query_naive_vs_zscore_screenshots(page, artifacts_dir):
    page.fill("#q", QUERY)
    page.click("#gap-toggle button[data-gap='naive']")
    page.click("#search-btn")
    naive = _search(page, "naive")
    page.screenshot(path=str(artifacts_dir / "web-search-naive.png"), full_page=True)
    z = _search(page, "zscore")
    page.screenshot(path=str(artifacts_dir / "web-search-zscore.png"), full_page=True)
    assert len(naive["mods"]) == len(z["mods"]) == 12
    assert z["images"] > naive["images"], (naive, z)  # naive ranks texts first, zscore surfaces more images
    assert "gap zscore" in z["summary"]
    # the comparison strip tells the same story: images in the top k per corrector
    strip = {b.get_attribute("data-gap"): int(b.inner_text().split()[-1])
             for b in page.locator("#compare .cmp").all()}
    assert strip["naive"] == naive["images"] and strip["zscore"] == z["images"]
    # every image card shows a real, loaded image served by id
    widths = page.eval_on_selector_all(".card.image img", "els => els.map(e => e.naturalWidth)")
    assert widths and min(widths) > 0
    # raw and corrected scores are both shown
    first = page.locator("#results .card").first
    assert "score" in first.inner_text() and "cosine" in first.inner_text()
    assert page.problems == []


def test_image_drop_zone_search(page, artifacts_dir):
    x = store_records()[7]
    page.set_input_files("#file", str(x.path))
    page.wait_for_selector("#image-chip:not(.hidden)")
    page.wait_for_function("() => document.querySelector('#results').dataset.state === 'done' && "
                           "document.querySelector('#image-chip-name').textContent.length > 0")
    page.click("#gap-toggle button[data-gap='naive']")
    page.wait_for_selector("#results[data-state='done'][data-gap='naive']")
    assert page.locator("#results .card").first.get_attribute("data-id") == f"img:{x.image_id}"
    page.screenshot(path=str(artifacts_dir / "web-search-by-image.png"), full_page=True)
    page.click("#image-chip-clear")
    assert page.locator("#image-chip.hidden").count() == 1
    assert page.problems == []


def test_ask_panel(page, artifacts_dir):
    page.fill("#q", "What is the dog carrying in its mouth?")
    page.click("#gap-toggle button[data-gap='zscore']")
    with page.expect_response(lambda r: r.url.endswith("/ask")) as asked:
        page.click("#ask-btn")
    page.wait_for_selector("#answer[data-state='done']")
    res = asked.value  # the page asks for a streamed answer (server-sent events)
    assert res.request.post_data_json["stream"] is True
    assert res.headers["content-type"].startswith("text/event-stream")
    page.wait_for_selector("#compare[data-state='done'] .cmp.on[data-gap='zscore']")
    page.wait_for_function("() => [...document.querySelectorAll('.card.image img')].every(i => i.complete)")
    assert page.inner_text("#answer-text").strip()
    assert page.locator("#answer-sources li").count() >= 1
    page.screenshot(path=str(artifacts_dir / "web-ask.png"), full_page=True)
    assert page.problems == []


def test_api_key_flow(offline_encoder, tmp_path, artifacts_dir, browser):
    """With MINDGAP_API_KEY set the page asks for the key, then searches and shows images (fetched with it)."""
    from mindgap.server import create_app, serve_in_thread

    uri = copy_store(offline_encoder, tmp_path / "store")
    with serve_in_thread(create_app(uri, encoder=offline_encoder, api_key="page-key")) as srv:
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.goto(srv.url + "/")
        pg.wait_for_selector("#keybox:not(.hidden)")
        pg.fill("#apikey", "page-key")
        pg.click("#apikey-save")
        pg.wait_for_selector("#gap-toggle button[data-gap='zscore']")
        assert pg.locator("#keybox.hidden").count() == 1
        pg.fill("#q", QUERY)
        pg.click("#search-btn")
        pg.wait_for_selector("#results[data-state='done']")
        pg.wait_for_function("() => { const im = [...document.querySelectorAll('.card.image img')];"
                             " return im.length > 0 && im.every(i => i.complete && i.naturalWidth > 0); }")
        assert pg.eval_on_selector(".card.image img", "e => e.src").startswith("blob:")
        pg.screenshot(path=str(artifacts_dir / "web-api-key.png"))
        pg.close()
