"""`qkv serve` holds the load and lets no one else in: 100 concurrent clients, Host/Origin/Content-Type checks,
malformed JSON, slow bodies, the connection cap, quiet disconnects, and a fuzz test of the request parser."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkv.models.transformer import AttentionMaps
from qkv.tasks.translation.translator import AttentionView
from qkv.viz.guard import RequestError, allowed_hosts, check_host, parse_json_body, split_host
from qkv.viz.serve import AttentionApp, Limits, make_server


class Fast:
    """A stand-in model that answers in a few milliseconds: these tests are about the server, not the model."""

    def attention(self, source, target=None, beam_size=5, alpha=0.6):
        time.sleep(0.002)
        w = torch.full((1, 1, 2, 2), 0.5)
        return AttentionView(["a", "b"], ["<s>", "c"], AttentionMaps([w], [w], [w]), "c")


def start(limits: Limits | None = None):
    limits = limits or Limits()
    httpd = make_server(AttentionApp(Fast(), "fast fake", limits=limits), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread


@pytest.fixture(scope="module")
def server():
    httpd, thread = start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def request(port, method="POST", path="/api/translate", body=b'{"sentence": "may 1", "beam_size": 1}',
            headers=None, timeout=60.0):
    """(status, JSON) of one request; ``headers`` replace the defaults (``Host`` is always sent by http.client
    unless given here)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json"} if method == "POST" else {}
        hdrs.update(headers or {})
        conn.putrequest(method, path, skip_host="Host" in hdrs, skip_accept_encoding=True)
        for k, v in hdrs.items():
            if v is not None:
                conn.putheader(k, v)
        if body is not None and method == "POST":
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if method == "POST" else None)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null") if "json" in (resp.getheader("Content-Type") or "") \
            else resp.read()
    finally:
        conn.close()


def test_100_concurrent_posts_are_all_answered(server):
    n = 100
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait(timeout=60)  # all connect at once
        return request(server, body=json.dumps({"sentence": f"may {i}", "beam_size": 1}).encode(), timeout=120)

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        _, pending = wait(futures, timeout=300)  # bounded in time
    assert not pending
    results = [f.result() for f in futures]  # a connection reset would raise here
    for i, (status, data) in enumerate(results):
        assert status == 200 or (status >= 400 and "error" in data), (status, data)
        if status == 200:
            assert data["source"] == f"may {i}"
    print("statuses:", {s: sum(r[0] == s for r in results) for s in {r[0] for r in results}})
    assert sum(r[0] == 200 for r in results) == n  # under the connection cap (128): every one served


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example", 403),
        ("evil.example:{port}", 403),
        ("127.0.0.1:1", 403),  # another port
        ("localhost:{port}", 200),
        ("127.0.0.1:{port}", 200),
        ("[::1]:{port}", 200),
        ("LOCALHOST", 200),
        ("local host", 403),
    ],
)
def test_only_local_host_names_are_answered(server, host, status):
    host = host.format(port=server)
    got, data = request(server, headers={"Host": host})
    assert got == status, data
    got_get, _ = request(server, "GET", "/api/info", headers={"Host": host})
    assert got_get == status
    if status == 403:
        assert "is not this server" in data["error"]


def test_allowed_hosts_follow_the_bound_address():
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("::") is None  # bound to the network on purpose
    assert "192.168.1.5" in allowed_hosts("192.168.1.5") and "localhost" in allowed_hosts("192.168.1.5")
    assert "qkv.lan" in allowed_hosts("127.0.0.1", ["qkv.lan"]) and "evil.example" not in allowed_hosts("127.0.0.1")
    assert "[fe80::1]" in allowed_hosts("fe80::1")
    assert split_host("[::1]:8000") == ("[::1]", 8000) and split_host("Localhost") == ("localhost", None)
    with pytest.raises(RequestError, match="required"):
        check_host(None, allowed_hosts("127.0.0.1"), 80)


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Origin": "http://evil.example"}, 403, "cross-origin"),
        ({"Origin": "null"}, 403, "cross-origin"),
        ({"Origin": "https://127.0.0.1:{port}"}, 403, "cross-origin"),
        ({"Sec-Fetch-Site": "cross-site"}, 403, "cross-site"),
        ({"Content-Type": "text/plain"}, 415, "application/json"),
        ({"Content-Type": None}, 415, "application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"Content-Type": "application/json; charset=latin-1"}, 415, "UTF-8"),
        ({"Origin": "http://127.0.0.1:{port}"}, 200, None),
        ({"Content-Type": "application/json; charset=utf-8", "Sec-Fetch-Site": "same-origin"}, 200, None),
    ],
)
def test_cross_site_posts_and_non_json_bodies_are_refused(server, headers, status, message):
    headers = {k: (v.format(port=server) if v else v) for k, v in headers.items()}
    got, data = request(server, headers=headers)
    assert got == status, data
    if message:
        assert message in data["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 4000 + b"]" * 4000, "nested 4000 levels"),
        (b'{"sentence": "may 1", "beam_size": ' + b"9" * 5000 + b"}", "5000 digits"),
        (b'{"sentence": "\\ud800 may"}', "lone surrogate"),
        (b'{"sentence": "may 1", "beam_size": NaN}', "NaN is not a JSON number"),
        (b'{"sentence": "may 1", "beam": 2}', "unknown field"),
        (b'{"sentence": "caf\xe9"}', "UTF-8"),
        (b'{"\\udc00": 1}', "lone surrogate"),
        (b"", "must be JSON"),
    ],
)
def test_malformed_json_is_a_400_with_a_message(server, body, message):
    status, data = request(server, body=body)
    assert status == 400, data
    assert message in data["error"]


def test_slow_bodies_time_out_and_the_connection_cap_holds(caplog):
    httpd, thread = start(Limits(body_seconds=1.0, socket_seconds=4.0, max_connections=3))
    port = httpd.server_address[1]
    try:
        # a body trickling in one byte every 0.3 s: each read is quick, the whole is not
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(f"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"
                      "\r\nContent-Length: 40\r\n\r\n".encode())
            answer = b""
            for _ in range(40):
                try:
                    s.sendall(b" ")
                except OSError:
                    break
                time.sleep(0.3)
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    answer += s.recv(4096)
                s.setblocking(True)
                if answer:
                    break
            s.settimeout(10)
            answer += s.recv(4096) if b"\r\n\r\n" not in answer else b""
        assert answer.startswith(b"HTTP/1.0 408") and b"did not arrive within 1 s" in answer
        # three idle connections hold every slot: the fourth gets a 503 JSON at once
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
        try:
            time.sleep(0.3)
            status, data = request(port, "GET", "/api/info", timeout=10)
            assert status == 503 and "busy" in data["error"]
        finally:
            for s in idle:
                s.close()
        time.sleep(0.5)
        assert request(port, "GET", "/api/info", timeout=10)[0] == 200  # the slots come back
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_a_client_that_disconnects_costs_one_quiet_line(server, caplog, capfd):
    with caplog.at_level(logging.INFO, logger="qkv.viz.serve"):
        with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
            s.sendall(f"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1:{server}\r\nContent-Type: application/json"
                      "\r\nContent-Length: 100\r\n\r\n{\"sent".encode())
        for _ in range(100):
            if any("client gone" in r.getMessage() for r in caplog.records):
                break
            time.sleep(0.05)
    gone = [r for r in caplog.records if "client gone" in r.getMessage()]
    assert len(gone) == 1 and gone[0].exc_info is None and gone[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in capfd.readouterr().err


# -- fuzz: whatever the body, the parser answers (sentence, beam) or a RequestError with a 4xx -----------------

APP = AttentionApp(Fast())
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
        alphabet=st.characters(exclude_categories=()), max_size=20
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def parse_or_refuse(body: bytes) -> None:
    try:
        sentence, beam = APP.parse(body)
    except RequestError as err:
        assert 400 <= err.status < 500 and str(err)
        return
    assert isinstance(sentence, str) and sentence == " ".join(sentence.split()) and sentence
    assert len(sentence) <= APP.limits.max_chars and 1 <= beam <= APP.limits.max_beam
    sentence.encode("utf-8")  # never a lone surrogate


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_the_parser_with_bytes(body):
    parse_or_refuse(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON, st.sampled_from(["{}", '{"sentence": %s}', '{"sentence": "may 1", "beam_size": %s}', "[%s]", "%s"]))
def test_fuzz_the_parser_with_json(value, template):
    text = json.dumps(value)
    parse_or_refuse((template % text if "%s" in template else template).encode())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.integers(min_value=0, max_value=70000))
def test_fuzz_the_host_check(host, port):
    try:
        check_host(host, allowed_hosts("127.0.0.1"), port)
    except RequestError as err:
        assert err.status in (400, 403)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_parse_json_body_never_raises_anything_else(body):
    try:
        parse_json_body(body)
    except RequestError as err:
        assert err.status == 400
