"""Regenerate docs/screenshot-search.png (the README's web-page picture) and its numbers.

A real server on 127.0.0.1 over a small real store — 40 Flickr8k test photos and two of
each photo's captions as passages, indexed by the default bundled model; the out-of-the-box
`auto` corrector is fitted the way `mindgap index` fits it (label-free, the store's own
texts) and is the store's default. Headless Chromium (Playwright) types one question, runs
it under every corrector the page offers and keeps the screenshot of the default one.
The per-corrector counts of images in the top k go to docs/screenshot-search.json, which is
the source of the numbers the README quotes about the picture.

Usage: python docs/screenshot.py [--query TEXT] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_PHOTOS = 40


def build_store(path: Path) -> str:
    from mindgap.datasets import load_caption_set
    from mindgap.gap.auto import fit_auto
    from mindgap.retriever import Retriever
    from mindgap.types import Item, Modality

    recs = load_caption_set("flickr8k_224", split="test")[:N_PHOTOS]
    uri = f"exact:{path}"
    with Retriever(uri) as r:
        items = [Item(f"img:{x.image_id}", Modality.IMAGE, uri=str(x.path), metadata={"source": "flickr8k test"})
                 for x in recs]
        items += [Item(f"txt:{x.image_id}:{j}", Modality.TEXT, text=x.captions[j]) for x in recs for j in range(2)]
        r.index(items, progress=False)
        fit_auto(r, make_default=True)
    return uri


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--query", default="a dog in the snow")  # the server tests' query
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from mindgap.encoders import DEFAULT_OFFLINE_SPEC
    from mindgap.server import create_app, serve_in_thread

    tmp = Path("runs/screenshot")  # git-ignored; rebuilt on every run
    shutil.rmtree(tmp, ignore_errors=True)
    uri = build_store(tmp / "kb")
    out: dict = {"query": args.query, "encoder": DEFAULT_OFFLINE_SPEC,
                 "store": f"{N_PHOTOS} Flickr8k test photos + {2 * N_PHOTOS} of their captions as passages",
                 "images_in_top_k": {}}
    with serve_in_thread(create_app(uri, generator="extractive")) as srv, sync_playwright() as p:
        b = p.chromium.launch(executable_path=args.chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = b.new_page(viewport={"width": 1280, "height": 960})
        page.goto(srv.url + "/")
        page.wait_for_selector("#gap-toggle button")
        gaps = [page.locator("#gap-toggle button").nth(i).get_attribute("data-gap")
                for i in range(page.locator("#gap-toggle button").count())]
        default = page.locator("#gap-toggle button[aria-checked='true']").get_attribute("data-gap")
        out["default_gap"], out["k"] = default, int(page.input_value("#k"))
        page.fill("#q", args.query)
        for g in [x for x in gaps if x != default] + [default]:  # the default last: its picture is kept
            if page.locator(f"#gap-toggle button[data-gap='{g}']").get_attribute("aria-checked") != "true":
                page.click(f"#gap-toggle button[data-gap='{g}']")
            page.click("#search-btn")
            page.wait_for_selector(f"#results[data-state='done'][data-gap='{g}']")
            page.wait_for_function("() => [...document.querySelectorAll('.card.image img')].every(i => i.complete)")
            cards = page.locator("#results .card")
            mods = [cards.nth(i).get_attribute("data-modality") for i in range(cards.count())]
            out["images_in_top_k"][g] = {"images": mods.count("image"), "texts": mods.count("text")}
        page.wait_for_selector(f"#compare[data-state='done']")
        page.screenshot(path=str(HERE / "screenshot-search.png"), full_page=True)
        b.close()
    (HERE / "screenshot-search.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
