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


# -- attention by hand: click a cell, read the arithmetic, compare with `qkv explain` ------------------------


def click_cell(page, row: int, col: int) -> None:
    canvas = page.locator("#qkv-heatmap")
    cell, left, top = (float(canvas.get_attribute(f"data-{k}")) for k in ("cell", "left", "top"))
    canvas.click(position={"x": left + (col + 0.5) * cell, "y": top + (row + 0.5) * cell})
    page.wait_for_selector("#qkv-panel-title", timeout=5000)


def shown_vector(page, selector: str) -> list[float]:
    """The numbers a vector shows on the page: the text "[a, b, …]", parsed."""
    text = page.text_content(selector).split("]")[0].lstrip("[")
    return [float(v) for v in text.replace("…", "").split(",") if v.strip()]


def pixel(page, row: int, col: int) -> list[int]:
    return page.evaluate(
        """([r, c]) => { const cv = document.getElementById('qkv-heatmap'), d = Number(cv.dataset.cell);
             const x = Number(cv.dataset.left) + (c + 0.5) * d, y = Number(cv.dataset.top) + (r + 0.25) * d;
             const s = window.devicePixelRatio || 1;
             return Array.from(cv.getContext('2d').getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data); }""",
        [row, col],
    )


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """A tiny Transformer's explorer page with the walk-through and the lessons (as `qkv attention` writes it)."""
    from qkv.viz.export import export_attention
    from qkv.viz.walk import model_walk

    torch.manual_seed(0)
    model = Transformer(TransformerConfig.preset("tiny", src_vocab_size=30, tgt_vocab_size=30)).eval()
    src, tgt = torch.tensor([[5, 6, 7, 8, 2]]), torch.tensor([[1, 9, 10, 11]])
    walk = model_walk(model, lambda: model(src, tgt, return_attention=True))
    with torch.no_grad():
        _, maps = model(src, tgt, return_attention=True)
    kinds = transformer_kinds(maps, ["▁ein", "▁großer", "▁Hund", "▁bellt", "</s>"], ["<s>", "▁a", "▁big", "▁dog"])
    out = tmp_path_factory.mktemp("walked")
    written = export_attention(kinds, out, title="ein Hund", formats=("png",), alignment_layer=0, walk=walk)
    return model, src, out / "attention.html", written


def open_page(browser, path):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("http*://**", lambda route: route.abort())  # offline
    page.goto(path.as_uri())
    page.wait_for_selector("#qkv-heatmap")
    return page, errors


def test_a_clicked_cell_shows_the_numbers_of_qkv_explain(browser, walked, shots):
    from qkv.viz.explain import explain_head

    model, src, path, _ = walked
    page, errors = open_page(browser, path)
    page.select_option("#qkv-layer", "1")  # layer 2
    page.select_option("#qkv-head", "2")  # head 3
    click_cell(page, 1, 3)  # query «▁großer» -> key «▁bellt»
    ex = explain_head(model, src, layer=1, head=2)  # what `qkv explain --layer 2 --head 3` prints
    assert "layer 2, head 3: query i = 1 «▁großer» → key j = 3 «▁bellt»" in page.text_content("#qkv-panel-title")
    assert shown_vector(page, "#qkv-p-x-vec") == pytest.approx(ex.x[1, :8].tolist(), abs=1e-4)
    assert shown_vector(page, "#qkv-p-q-vec") == pytest.approx(ex.q[1, :8].tolist(), abs=1e-4)
    assert shown_vector(page, "#qkv-p-k-vec") == pytest.approx(ex.k[3, :8].tolist(), abs=1e-4)
    norm = float(page.get_attribute("#qkv-p-q-vec", "data-norm"))
    assert norm == pytest.approx(ex.q[1].norm().item(), abs=1e-4)
    assert float(page.text_content("#qkv-p-score")) == pytest.approx(ex.scores[1, 3].item(), abs=1e-4)
    assert float(page.text_content("#qkv-p-scaled-value")) == pytest.approx(ex.scaled[1, 3].item(), abs=1e-4)
    assert page.text_content("#qkv-p-mask-value").startswith("1: may attend")
    rows = page.locator("#qkv-p-row-table tr[data-key]")
    assert rows.count() == 5
    for j in range(5):  # the whole softmax row
        shown = float(rows.nth(j).locator("td").nth(3).text_content())
        assert shown == pytest.approx(ex.weights[1, j].item(), abs=1e-4)
    assert "qkv-sel" in rows.nth(3).get_attribute("class")  # the clicked key highlighted
    assert shown_vector(page, "#qkv-p-out-vec") == pytest.approx(ex.head_output[1, :8].tolist(), abs=1e-4)
    assert shown_vector(page, "#qkv-p-multi-vec") == pytest.approx(ex.output[1, :8].tolist(), abs=1e-4)
    check = page.text_content("#qkv-p-check-text")
    assert "max |by hand − model|" in check and "multihead_by_hand" in check
    page.locator("#qkv-panel").screenshot(path=str(shots / "walk_panel_encoder.png"))
    page.screenshot(path=str(shots / "walk_page_encoder.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_masked_cells_are_hatched_and_explained_in_decoder_and_cross(browser, walked, shots):
    _, _, path, _ = walked
    page, errors = open_page(browser, path)
    page.select_option("#qkv-kind", index=1)  # decoder masked self-attention
    page.select_option("#qkv-head", "0")
    r, g, b, _ = pixel(page, 0, 3)  # above the diagonal: masked
    assert abs(r - g) < 12 and abs(g - b) < 12 and r > 120  # grey hatching, not a colour of the scale
    r, g, b, _ = pixel(page, 3, 0)  # allowed
    assert not (abs(r - g) < 12 and abs(g - b) < 12)
    click_cell(page, 0, 3)
    assert page.text_content("#qkv-p-mask-value").startswith("0: masked (causal")
    assert page.locator("#qkv-p-row-table tr.qkv-masked").count() == 3
    page.screenshot(path=str(shots / "walk_decoder_masked.png"), full_page=True)
    page.select_option("#qkv-kind", index=2)  # cross-attention: keys from the encoder output
    page.select_option("#qkv-head", "1")
    click_cell(page, 2, 4)
    assert page.locator("#qkv-p-m-vec").count() == 1 and "«</s>»" in page.text_content("#qkv-panel-title")
    assert not errors, errors
    page.close()


def test_lines_view_highlights_what_a_token_attends_to_and_what_attends_to_it(browser, walked, shots):
    _, _, path, _ = walked
    page, errors = open_page(browser, path)
    page.select_option("#qkv-kind", index=1)  # decoder self: causal
    page.click("#qkv-view-lines")
    heads = page.evaluate(
        "() => new Set([...document.querySelectorAll('#qkv-lines line')].map(l => l.dataset.head)).size"
    )
    assert heads == 4  # every head at once, one colour each
    visible = "() => [...document.querySelectorAll('#qkv-lines line')].filter(l => l.style.display !== 'none')"
    page.locator(".qkv-token-q").nth(1).hover()
    queries = page.evaluate(visible + ".map(l => l.dataset.query)")
    assert queries and set(queries) == {"1"}
    assert page.locator(".qkv-token-k rect.qkv-masked").count() == 2  # keys 2, 3 come after query 1
    page.screenshot(path=str(shots / "walk_lines_query.png"), full_page=True)
    page.locator(".qkv-token-k").nth(0).hover()
    assert set(page.evaluate(visible + ".map(l => l.dataset.key)")) == {"0"}
    page.select_option("#qkv-head", "2")
    assert page.evaluate("() => [...document.querySelectorAll('#qkv-lines line')].every(l => l.dataset.head === '2')")
    assert not errors, errors
    page.close()


def test_alignment_opens_on_the_pngs_layer_and_the_lessons_are_the_python_numbers(browser, walked, shots):
    from qkv.viz.explain import scaling_table

    _, _, path, written = walked
    assert any(p.name == "alignment_layer1.png" for p in written)  # --layer 1
    page, errors = open_page(browser, path)
    page.select_option("#qkv-layer", "1")
    page.click("#qkv-view-alignment")
    assert page.input_value("#qkv-layer") == "0" and "layer 1" in page.text_content("#qkv-caption")
    page.click("#qkv-view-scaling")
    rows = scaling_table(tuple(2**i for i in range(11)), n_keys=32)
    for index in (2, 10):  # d_k = 4, 1024
        page.fill("#qkv-dk", str(index))
        assert page.text_content("#qkv-dk-value") == str(rows[index].d_k)
        r = rows[index]
        for name, want in (("var-unscaled", r.var_dot), ("ent-unscaled", r.entropy_unscaled),
                           ("ent-scaled", r.entropy_scaled), ("max-unscaled", r.max_weight_unscaled)):
            assert float(page.text_content(f"#qkv-{name}")) == pytest.approx(want, abs=1e-3), name
    page.screenshot(path=str(shots / "lesson_sqrt_dk.png"), full_page=True)
    page.click("#qkv-view-positions")
    page.fill("#qkv-pos", "7")
    assert page.text_content("#qkv-pos-value") == "7" and "PE(7)·PE(q)" in page.text_content("#qkv-pos-plot")
    assert page.locator("#qkv-pe").count() == 1 and page.locator("#qkv-pe-sim").count() == 1
    page.screenshot(path=str(shots / "lesson_positions.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_the_soft_hash_table_lesson_shows_the_python_sweep(browser, walked, shots):
    from qkv.viz.hashtable import soft_hash_table

    table = soft_hash_table()
    page, errors = open_page(browser, walked[2])
    page.click("#qkv-view-hashtable")
    for qi, lookup in enumerate(table.queries):  # "dog" equals a key, "kitten" none
        page.select_option("#qkv-ht-query", str(qi))
        for ti in (0, len(lookup.sweep) - 1):  # the softest τ and hard attention
            page.fill("#qkv-ht-tau", str(ti))
            row = lookup.sweep[ti]
            shown = [float(page.get_attribute(f"#qkv-ht-w-{i}", "data-v")) for i in range(len(table.keys))]
            assert shown == pytest.approx(row.weights, abs=1e-9)
            assert float(page.get_attribute("#qkv-ht-output", "data-v")) == pytest.approx(row.output[0], abs=1e-9)
            assert ("hard" in page.text_content("#qkv-ht-tau-value")) == row.hard
        text = page.text_content("#qkv-ht-result")
        assert ("KeyError" in text) == (lookup.exact_key is None), text
    page.screenshot(path=str(shots / "lesson_hash_table.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_a_classifier_page_and_the_size_limit(browser, tmp_path, shots):
    from qkv.models.classifier import ClassifierConfig, TextClassifier
    from qkv.viz.explain import explain_head
    from qkv.viz.maps import collect_kinds
    from qkv.viz.walk import model_walk

    torch.manual_seed(0)
    clf = TextClassifier(ClassifierConfig.preset("tiny", vocab_size=40, n_layers=2)).eval()
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        _, maps = clf(ids, return_attention=True)
    tokens = ["[CLS]", "▁a", "▁good", "▁film"]
    kinds = collect_kinds({"encoder_self": maps}, {"encoder_self": (tokens, tokens)})
    full = model_walk(clf, lambda: clf(ids, return_attention=True))
    walk = model_walk(clf, lambda: clf(ids, return_attention=True), limit_bytes=full["bytes"] * 2 // 3)
    assert walk["omitted"] == [{"kind": "encoder_self", "layer": 1}]
    path = save_explorer_html(kinds, tmp_path / "attention.html", title="a good film", walk=walk)
    page, errors = open_page(browser, path)
    page.select_option("#qkv-head", "1")
    click_cell(page, 0, 2)  # [CLS] -> «▁good»
    ex = explain_head(clf, ids, layer=0, head=1)
    assert float(page.text_content("#qkv-p-score")) == pytest.approx(ex.scores[0, 2].item(), abs=1e-4)
    page.select_option("#qkv-layer", "1")  # over the limit: the page says so
    click_cell(page, 0, 2)
    assert "limited to" in page.text_content("#qkv-panel-note")
    page.screenshot(path=str(shots / "walk_classifier_limit.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_web_app_cells_are_computed_server_side(browser, server, shots):
    from qkv.viz.explain import explain_head
    from qkv.viz.serve import demo_translator

    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    page.fill("#qkv-sentence", "june 5 twenty twenty")
    page.select_option("#qkv-beam", "1")
    page.click("#qkv-submit")
    page.wait_for_selector("#qkv-heatmap", timeout=60000)
    page.select_option("#qkv-head", "3")  # encoder layer 1, head 4
    click_cell(page, 2, 0)
    tr = demo_translator()  # the same seeded model as the server's
    src = torch.tensor([[*tr.encode_sources(["june 5 twenty twenty"])[0], 2]])
    ex = explain_head(tr.model, src, layer=0, head=3)
    assert float(page.text_content("#qkv-p-score")) == pytest.approx(ex.scores[2, 0].item(), abs=1e-4)
    assert shown_vector(page, "#qkv-p-out-vec") == pytest.approx(ex.head_output[2, :8].tolist(), abs=1e-4)
    page.screenshot(path=str(shots / "app_walk_panel.png"), full_page=True)
    assert not errors, errors
    page.close()
