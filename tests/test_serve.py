"""qkv.viz.serve: the web app's page, JSON API, input bounds, errors and concurrent requests."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from qkv.models.transformer import AttentionMaps
from qkv.tasks.translation.translator import AttentionView
from qkv.viz.serve import AttentionApp, Limits, demo_translator, make_server


@pytest.fixture(scope="module")
def translator():
    return demo_translator()


@pytest.fixture(scope="module")
def server(translator):
    app = AttentionApp(translator, "demo model", untrained=True)
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def post(url: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        url + "/api/translate", data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_page_is_self_contained_and_says_untrained(server):
    with urllib.request.urlopen(server + "/", timeout=30) as resp:
        page = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/html")
    assert 'id="qkv-form"' in page and "QKV.render" in page and 'id="qkv-untrained"' in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # no CDN, nothing external
    with urllib.request.urlopen(server + "/api/info", timeout=30) as resp:
        info = json.loads(resp.read())
    assert info["untrained"] is True and info["limits"]["max_chars"] == Limits().max_chars


def test_translate_returns_the_models_real_maps(server, translator):
    status, data = post(server, {"sentence": "  june 5   twenty twenty ", "beam_size": 1})
    assert status == 200, data
    assert data["source"] == "june 5 twenty twenty"  # whitespace normalised
    view = translator.attention("june 5 twenty twenty", beam_size=1)
    assert data["translation"] == view.translation
    kinds = {k["name"]: k for k in data["kinds"]}
    assert set(kinds) == {"encoder_self", "decoder_self", "cross"}
    assert (
        kinds["cross"]["query_tokens"] == view.tgt_tokens and kinds["cross"]["key_tokens"] == view.src_tokens
    )
    for name in kinds:
        got = np.array(kinds[name]["weights"])  # (L, H, Tq, Tk)
        want = np.stack([m[0].numpy() for m in getattr(view.maps, name)])
        np.testing.assert_allclose(got, want, atol=5.1e-5)
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "must be JSON"),
        (b"[1, 2]", 400, "expected a JSON object"),
        ({"sentence": 5}, 400, "must be a string"),
        ({"sentence": "   "}, 400, "the sentence is empty"),
        ({"sentence": "x" * 301}, 400, "301 characters; the limit is 300"),
        ({"sentence": "a " * 61}, 400, "61 words; the limit is 60"),
        ({"sentence": "may 1", "beam_size": 99}, 400, "beam_size"),
        ({"sentence": "may 1", "beam_size": True}, 400, "beam_size"),
        (b"x" * 9000, 413, "limit is 8192"),
    ],
)
def test_bad_input_gets_a_clear_json_error(server, body, status, message):
    got_status, data = post(server, body)
    assert got_status == status
    assert message in data["error"]


def test_unknown_paths_are_404(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server + "/nope", timeout=30)
    assert err.value.code == 404 and "no such page" in json.loads(err.value.read())["error"]


def test_concurrent_requests_each_get_their_own_answer(server, translator):
    sentences = ["may 1", "june 22 twenty ten", "march 3 nineteen ninety", "july 4", "april 9 two thousand"]
    expected = {s: translator.attention(s, beam_size=1) for s in sentences}
    requests = sentences * 2
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(lambda s: post(server, {"sentence": s, "beam_size": 1}), requests))
    for sentence, (status, data) in zip(requests, results):
        assert status == 200
        assert data["source"] == sentence
        assert data["translation"] == expected[sentence].translation
        enc = next(k for k in data["kinds"] if k["name"] == "encoder_self")
        assert enc["query_tokens"] == expected[sentence].src_tokens


class SlowFake:
    """Records how many calls run inside the model at once (the app must allow one)."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.guard = threading.Lock()
        self.entered = threading.Event()

    def attention(self, source, target=None, beam_size=5, alpha=0.6):
        with self.guard:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.wait(0.05)  # give other threads the chance to come in
        with self.guard:
            self.inside -= 1
        w = torch.full((1, 1, 2, 2), 0.5)
        return AttentionView(["a", "b"], ["<s>", "c"], AttentionMaps([w], [w], [w]), "c")


def test_the_model_runs_one_request_at_a_time():
    fake = SlowFake()
    app = AttentionApp(fake)
    with ThreadPoolExecutor(max_workers=6) as pool:
        out = list(pool.map(lambda i: app.translate(json.dumps({"sentence": f"s {i}"}).encode()), range(12)))
    assert len(out) == 12 and {o["source"] for o in out} == {f"s {i}" for i in range(12)}
    assert fake.most == 1


def test_the_served_search_uses_the_apps_length_penalty():
    """``qkv serve --alpha`` reaches every request's search, with the request's beam size; the answer says both."""
    calls = []

    class Recording:
        def attention(self, source, target=None, beam_size=5, alpha=0.6):
            calls.append((beam_size, alpha))
            w = torch.full((1, 1, 2, 2), 0.5)
            return AttentionView(["a", "b"], ["<s>", "c"], AttentionMaps([w], [w], [w]), "c")

    data = AttentionApp(Recording(), alpha=1.4).translate(b'{"sentence": "a b", "beam_size": 3}')
    assert calls == [(3, 1.4)] and (data["beam_size"], data["alpha"]) == (3, 1.4)
    AttentionApp(Recording()).translate(b'{"sentence": "a b"}')
    assert calls[-1] == (1, 0.6)


def test_model_errors_become_400():
    class TooLong:
        def attention(self, source, target=None, beam_size=5, alpha=0.6):
            raise ValueError("sentence 1 has 300 subwords; this model accepts at most 100")

    app = AttentionApp(TooLong())
    with pytest.raises(ValueError, match="at most 100") as err:
        app.translate(b'{"sentence": "a b c"}')
    assert err.value.status == 400


def test_cli_serve_starts_and_answers(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "qkv.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while not line.startswith("serving"):
            line = proc.stdout.readline()
            assert line, f"qkv serve exited: {proc.stderr.read()}"
        url = re.search(r"http://[\d.]+:\d+/", line).group(0)
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and "qkv-untrained" in resp.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
