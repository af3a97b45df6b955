"""A local web app: type a sentence, get its translation and the interactive attention views.

Standard library only (:class:`http.server.ThreadingHTTPServer`, made to hold the load): each request runs in
its own thread, and one lock around the model makes concurrent requests safe (the model and tokenizers are
shared, never mutated between requests otherwise). The listen backlog is :attr:`Limits.backlog` (the standard
library's 5 reset most of 100 concurrent clients), at most :attr:`Limits.max_connections` are open at once
(the next one gets a quick 503), a body must arrive within :attr:`Limits.body_seconds`, and a client that
goes away costs one quiet log line. Requests are checked by :mod:`qkv.viz.guard` (local Host names only,
no cross-site POSTs, JSON bodies only, malformed JSON refused). Inputs are bounded (body size, sentence
length, beam size); bad input gets a JSON ``{"error": …}`` with status 400/403/404/408/413/415 that the page
shows.

Routes:
    ``GET /``                  the page (inline CSS/JS, no network);
    ``GET /api/info``          ``{"model": …, "untrained": bool, "limits": {…}}``;
    ``POST /api/translate``    ``{"sentence": str, "beam_size": int}`` -> ``{"translation", "kinds", …}``
                               (the explorer's JSON, see :func:`qkv.viz.html.explorer_data`, with the
                               walk-through of every cell, :mod:`qkv.viz.walk`, computed here).
"""

from __future__ import annotations

import html
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from qkv.viz.guard import RequestError, allowed_hosts, check_host, check_post_headers, parse_json_body
from qkv.viz.html import asset, explorer_data, fill, scripts
from qkv.viz.lessons import lessons_data
from qkv.viz.maps import transformer_kinds
from qkv.viz.walk import DEFAULT_LIMIT_BYTES, model_walk

log = logging.getLogger(__name__)


class AttentionSource(Protocol):
    """What the app needs from a model: :meth:`qkv.tasks.translation.translator.Translator.attention`."""

    def attention(self, source: str, target: str | None = None, beam_size: int = 5, alpha: float = 0.6): ...


@dataclass(frozen=True)
class Limits:
    """Bounds on one request (the model is small and shared: keep each request cheap)."""

    max_body_bytes: int = 8192
    max_chars: int = 300
    max_words: int = 60
    max_beam: int = 8
    walk_bytes: int = DEFAULT_LIMIT_BYTES  # the walk-through of every cell sent with a translation
    max_connections: int = 128  # open at once; the next one gets a 503 at once
    backlog: int = 256  # the listen queue (the standard library's default is 5)
    socket_seconds: float = 10.0  # a read or write that waits longer ends the connection
    body_seconds: float = 10.0  # the whole body must arrive within this


ALLOWED_KEYS = ("sentence", "beam_size")


class AttentionApp:
    """The app without the HTTP: validates a request, runs the model under a lock, returns JSON-ready data.

    Args:
        translator: anything with ``attention(source, target=None, beam_size=…, alpha=…) -> AttentionView``
            (a :class:`qkv.tasks.translation.translator.Translator`).
        description: one line about the model, shown in the page.
        untrained: say in the page that the model is an untrained demo (its output is noise).
        limits: request bounds.
        alpha: the beam search's length penalty α (§6.1; ``qkv serve --alpha``), the same for every request.
    """

    def __init__(
        self,
        translator: AttentionSource,
        description: str = "",
        untrained: bool = False,
        limits: Limits = Limits(),
        alpha: float = 0.6,
    ) -> None:
        self.translator = translator
        self.alpha = alpha
        self.description = description
        self.untrained = untrained
        self.limits = limits
        self._lock = threading.Lock()
        self._lessons_by_d_model: dict[int, dict] = {}

    def page(self) -> str:
        note = ""
        if self.untrained:
            note = (
                '<p class="qkv-note" id="qkv-untrained">No --model given: this is a small seeded '
                "<strong>untrained</strong> model, so its translations are noise; the attention maps are "
                "real tensors of its forward pass. Start with <code>qkv serve --model CHECKPOINT</code> for "
                "a real one.</p>"
            )
        return fill(
            asset("app.html"),
            CSS=asset("explorer.css"),
            JS=scripts(),
            MODEL=html.escape(self.description),
            NOTE=note,
            MAX_CHARS=str(self.limits.max_chars),
        )

    def info(self) -> dict[str, Any]:
        return {"model": self.description, "untrained": self.untrained, "limits": asdict(self.limits)}

    def parse(self, body: bytes) -> tuple[str, int]:
        """Validate a request body: ``(sentence, beam_size)`` or :class:`RequestError`."""
        payload = parse_json_body(body)
        if not isinstance(payload, dict):
            raise RequestError(400, f'expected a JSON object {{"sentence": …}}, got {type(payload).__name__}')
        unknown = sorted(set(payload) - set(ALLOWED_KEYS))
        if unknown:
            raise RequestError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; expected {ALLOWED_KEYS}")
        sentence = payload.get("sentence")
        if not isinstance(sentence, str):
            raise RequestError(400, '"sentence" must be a string')
        words = sentence.split()
        sentence = " ".join(words)
        if not sentence:
            raise RequestError(400, "the sentence is empty: type something to translate")
        if len(sentence) > self.limits.max_chars:
            raise RequestError(
                400, f"the sentence has {len(sentence)} characters; the limit is {self.limits.max_chars}"
            )
        if len(words) > self.limits.max_words:
            raise RequestError(400, f"the sentence has {len(words)} words; the limit is {self.limits.max_words}")
        beam = payload.get("beam_size", 1)
        if isinstance(beam, bool) or not isinstance(beam, int) or not 1 <= beam <= self.limits.max_beam:
            raise RequestError(
                400, f'"beam_size" must be an integer from 1 to {self.limits.max_beam}, got {beam!r}'
            )
        return sentence, beam

    def translate(self, body: bytes) -> dict[str, Any]:
        """Handle ``POST /api/translate``: the explorer's JSON plus the translation."""
        sentence, beam = self.parse(body)
        try:
            with self._lock:  # one request at a time in the model
                view = self.translator.attention(sentence, beam_size=beam, alpha=self.alpha)
                walk = self._walk(sentence, view)
        except ValueError as err:  # e.g. too many subwords for the model's positions
            raise RequestError(400, str(err)) from None
        kinds = transformer_kinds(view.maps, view.src_tokens, view.tgt_tokens)
        d_model = next((k["d_model"] for k in walk["kinds"].values()), 128) if walk else 128
        data = explorer_data(
            kinds, title="Attention", subtitle=f"{sentence}  →  {view.translation}", walk=walk,
            lessons=self._lessons(d_model),
        )
        data.update(
            source=sentence, translation=view.translation, beam_size=beam, alpha=self.alpha, untrained=self.untrained
        )
        return data

    def _lessons(self, d_model: int) -> dict:
        """The √d_k and positions lessons, computed once (the same for every request)."""
        with self._lock:
            if d_model not in self._lessons_by_d_model:
                self._lessons_by_d_model[d_model] = lessons_data(d_model)
            return self._lessons_by_d_model[d_model]

    def _walk(self, sentence: str, view) -> dict | None:
        """Every cell's arithmetic (:func:`qkv.viz.walk.model_walk`) from a teacher-forced forward pass."""
        model = getattr(self.translator, "model", None)
        if model is None:  # a stand-in without a model (tests): maps only
            return None
        return model_walk(
            model, lambda: self.translator.attention(sentence, view.translation), limit_bytes=self.limits.walk_bytes
        )


def _handler(app: AttentionApp, hosts: frozenset[str] | None) -> type[BaseHTTPRequestHandler]:
    limits = app.limits

    class Handler(BaseHTTPRequestHandler):
        server_version = "qkv"
        timeout = limits.socket_seconds  # a client that stops sending or reading does not hold a thread forever

        def log_message(self, format: str, *args) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict) -> None:
            try:
                text = json.dumps(data, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate in an echoed value: escape it
                text = json.dumps(data).encode("ascii")
            self._send(status, text, "application/json; charset=utf-8")

        def _check_host(self) -> bool:
            try:
                check_host(self.headers.get("Host"), hosts, self.server.server_address[1])
            except RequestError as err:
                self.close_connection = True
                self._json(err.status, {"error": str(err)})
                return False
            return True

        def do_GET(self) -> None:
            if not self._check_host():
                return
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, app.page().encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/api/info":
                self._json(200, app.info())
            else:
                self._json(404, {"error": f"no such page: {path}"})

        def _read_body(self) -> bytes:
            """The body, refused when too large, missing its length, or not all there within body_seconds."""
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise RequestError(411, "a Content-Length header is required") from None
            if length < 0 or length > limits.max_body_bytes:
                raise RequestError(413, f"request body of {length} bytes; the limit is {limits.max_body_bytes}")
            deadline, parts, got = time.monotonic() + limits.body_seconds, [], 0
            while got < length:
                if time.monotonic() > deadline:
                    raise RequestError(408, f"the body did not arrive within {limits.body_seconds:g} s")
                try:
                    chunk = self.rfile.read1(length - got)
                except TimeoutError:
                    raise RequestError(408, f"the body stalled for {limits.socket_seconds:g} s") from None
                if not chunk:
                    raise ConnectionResetError("the client closed the connection before sending its body")
                parts.append(chunk)
                got += len(chunk)
            return b"".join(parts)

        def do_POST(self) -> None:
            if not self._check_host():
                return
            try:
                if self.path.split("?", 1)[0] != "/api/translate":
                    raise RequestError(404, f"no such endpoint: {self.path}")
                check_post_headers(self.headers, self.headers.get("Host", ""))
                body = self._read_body()
                data = app.translate(body)
            except RequestError as err:
                self.close_connection = True  # an unread body must not be taken for the next request
                self._json(err.status, {"error": str(err)})
                return
            except (ConnectionError, TimeoutError):
                raise  # the client went away: one quiet line (QkvServer.handle_error)
            except Exception:
                log.exception("request failed")
                self._json(500, {"error": "internal error while running the model (see the server log)"})
                return
            self._json(200, data)

    return Handler


class QkvServer(ThreadingHTTPServer):
    """:class:`ThreadingHTTPServer` that holds the load: a deep listen backlog, a cap on open connections
    (the next one gets an immediate 503 JSON), and one quiet log line, not a traceback, for a client that
    disconnects or times out."""

    daemon_threads = True

    def __init__(self, address, handler, limits: Limits) -> None:
        self.request_queue_size = limits.backlog  # read by server_activate's listen()
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self.max_connections = limits.max_connections
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            body = json.dumps({"error": f"busy: {self.max_connections} connections are open; try again"}).encode()
            head = f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            try:
                request.settimeout(1.0)
                request.sendall(head.encode() + b"\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError, socket.timeout)):
            log.info("%s: client gone (%s)", client_address[0], type(err).__name__)
        else:
            log.exception("error while handling a request from %s", client_address[0])


def make_server(
    app: AttentionApp, host: str = "127.0.0.1", port: int = 8000, allow_hosts: Sequence[str] = ()
) -> QkvServer:
    """A threaded HTTP server for ``app`` (port 0 picks a free port: see ``server.server_address``).

    Args:
        host: the address to listen on; a request's ``Host`` must be a local name, this address, or one
            of ``allow_hosts`` (any name when ``host`` is a wildcard such as ``0.0.0.0``).

    Example:
        >>> server = make_server(AttentionApp(Translator.load("ckpt")), port=0)    # doctest: +SKIP
        >>> threading.Thread(target=server.serve_forever, daemon=True).start()     # doctest: +SKIP
    """
    return QkvServer((host, port), _handler(app, allowed_hosts(host, allow_hosts)), app.limits)


def demo_translator(seed: int = 0, n_pairs: int = 500, max_len_b: int = 10):
    """A small seeded, untrained Transformer on the built-in dates task, with a word-level vocabulary.

    For ``qkv serve`` / ``qkv attention`` without ``--model``: they always start, and the attention maps are
    real tensors of the model's forward pass, but the translations are noise until a model is trained
    (``qkv demo``). Outputs are capped at source length + ``max_len_b`` tokens (an untrained model rarely
    emits ``</s>``, and §6.1's +50 would give long maps of noise).
    """
    import torch

    from qkv.data.synthetic import date_pairs
    from qkv.data.tokenizer import TokenizerPair
    from qkv.models.transformer import Transformer, TransformerConfig
    from qkv.tasks.translation import Translator

    pairs = date_pairs(n_pairs, seed=seed)
    src_texts, tgt_texts = [s for s, _ in pairs], [t for _, t in pairs]
    tokenizers = TokenizerPair.train(src_texts, tgt_texts, vocab_size=500, model="word")
    v_src, v_tgt = tokenizers.src.vocab_size, tokenizers.tgt.vocab_size
    config = TransformerConfig.preset("tiny", src_vocab_size=v_src, tgt_vocab_size=v_tgt, max_len=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(config)
    return Translator(model, tokenizers, max_len_b=max_len_b)
