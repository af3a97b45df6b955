"""The web app and the HTML export in a real browser: headless Chromium driven by Playwright.

Needs the Debian ``chromium`` package (``/usr/bin/chromium``, or ``$QKV_CHROMIUM``) and ``pip install
playwright``; never ``playwright install``. Skips with the reason when either is missing. Screenshots go to
``$QKV_SCREENSHOTS`` (or the test's tmp folder); the path is printed.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

from qkv import Transformer, TransformerConfig
from qkv.viz.html import save_explorer_html
from qkv.viz.maps import transformer_kinds

CHROMIUM = os.environ.get("QKV_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium, or set QKV_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("QKV_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def server():
    from qkv.viz.serve import AttentionApp, demo_translator, make_server

    app = AttentionApp(demo_translator(), "untrained demo", untrained=True)
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def hover_cell(page, row: int, col: int) -> str:
    """Move the mouse over cell (row, col) of the heatmap canvas and return the tooltip's text."""
    canvas = page.locator("#qkv-heatmap")
    cell, left, top = (float(canvas.get_attribute(f"data-{k}")) for k in ("cell", "left", "top"))
    canvas.hover(position={"x": left + (col + 0.5) * cell, "y": top + (row + 0.5) * cell})
    tooltip = page.locator("#qkv-tooltip")
    tooltip.wait_for(state="visible", timeout=5000)
    return tooltip.text_content()


def test_web_app_translates_and_draws_attention(browser, server, shots):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    assert page.locator("#qkv-untrained").is_visible()  # the page says the model is untrained

    # bad input: the server's JSON error appears in the page
    page.fill("#qkv-sentence", "   ")
    page.click("#qkv-submit")
    page.wait_for_function("document.getElementById('qkv-error').textContent.length > 0", timeout=30000)
    assert "empty" in page.text_content("#qkv-error")

    page.fill("#qkv-sentence", "june 5 twenty twenty")
    page.select_option("#qkv-beam", "1")
    page.click("#qkv-submit")
    page.wait_for_selector("#qkv-heatmap", timeout=60000)
    assert page.text_content("#qkv-error") == ""
    translation = page.text_content("#qkv-translation")
    assert translation.strip()
    # the canvas really has pixels drawn (not blank white)
    painted = page.evaluate(
        """() => { const c = document.getElementById('qkv-heatmap');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 200) n++; return n; }"""
    )
    assert painted > 100
    text = hover_cell(page, 0, 0)  # the encoder, first layer, mean of heads: first source token to itself
    assert "→" in text and "june" in text
    page.screenshot(path=str(shots / "app_head_view.png"), full_page=True)

    page.select_option("#qkv-kind", index=2)  # cross-attention
    page.select_option("#qkv-head", "1")  # head 2
    assert "Cross-attention" in page.text_content("#qkv-caption") and "head 2" in page.text_content(
        "#qkv-caption"
    )
    page.click("#qkv-view-alignment")
    assert page.locator("#qkv-align line").count() > 0
    page.screenshot(path=str(shots / "app_alignment.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_exported_html_works_offline(browser, tmp_path, shots):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30)).eval()
    with torch.no_grad():
        _, maps = model(torch.tensor([[5, 6, 7, 2]]), torch.tensor([[1, 8, 9, 10]]), return_attention=True)
    src, tgt = ["▁ein", "▁Hund", "</script>", "</s>"], ["<s>", "▁a", "▁dog", "."]
    kinds = transformer_kinds(maps, src, tgt)
    path = save_explorer_html(kinds, tmp_path / "attention.html", title="ein Hund")

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("http*://**", lambda route: route.abort())  # prove it needs no network
    page.goto(path.as_uri())
    page.wait_for_selector("#qkv-heatmap")
    assert page.text_content("h2") == "ein Hund"

    page.select_option("#qkv-layer", "1")  # layer 2
    page.select_option("#qkv-head", "2")  # head 3
    text = hover_cell(page, 1, 2)  # query "▁Hund" -> key "</script>" (a label that must stay text)
    want = float(maps.encoder_self[1][0, 2, 1, 2])
    assert text.startswith("▁Hund → </script>: ")
    assert float(text.rsplit(": ", 1)[1]) == pytest.approx(want, abs=1e-4)
    page.screenshot(path=str(shots / "export_head_view.png"), full_page=True)

    page.click("#qkv-view-model")  # every layer × head
    assert page.locator("#qkv-grid figure").count() == 2 * 4
    page.locator("#qkv-grid figure").nth(5).click()  # layer 2, head 2 opens in the head view
    assert "layer 2, head 2" in page.text_content("#qkv-caption")
    page.click("#qkv-view-model")
    page.screenshot(path=str(shots / "export_model_view.png"), full_page=True)
    assert not errors, errors
    page.close()
