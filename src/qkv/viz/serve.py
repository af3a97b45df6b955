"""A local web app: type a sentence, get its translation and the interactive attention views.

Standard library only (:class:`http.server.ThreadingHTTPServer`): each request runs in its own thread, and one
lock around the model makes concurrent requests safe (the model and tokenizers are shared, never mutated
between requests otherwise). Inputs are bounded (body size, sentence length, beam size); bad input gets a
JSON ``{"error": …}`` with status 400/404/413 that the page shows.

Routes:
    ``GET /``                  the page (inline CSS/JS, no network);
    ``GET /api/info``          ``{"model": …, "untrained": bool, "limits": {…}}``;
    ``POST /api/translate``    ``{"sentence": str, "beam_size": int}`` -> ``{"translation", "kinds", …}``
                               (the explorer's JSON, see :func:`qkv.viz.html.explorer_data`).
"""

from __future__ import annotations

import html
import json
import logging
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from qkv.viz.html import asset, explorer_data, fill
from qkv.viz.maps import transformer_kinds

log = logging.getLogger(__name__)


class AttentionSource(Protocol):
    """What the app needs from a model: :meth:`qkv.tasks.translation.translator.Translator.attention`."""

    def attention(self, source: str, target: str | None = None, beam_size: int = 5): ...


@dataclass(frozen=True)
class Limits:
    """Bounds on one request (the model is small and shared: keep each request cheap)."""

    max_body_bytes: int = 8192
    max_chars: int = 300
    max_words: int = 60
    max_beam: int = 8


class RequestError(ValueError):
    """A request the app refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AttentionApp:
    """The app without the HTTP: validates a request, runs the model under a lock, returns JSON-ready data.

    Args:
        translator: anything with ``attention(source, target=None, beam_size=…) -> AttentionView``
            (a :class:`qkv.tasks.translation.translator.Translator`).
        description: one line about the model, shown in the page.
        untrained: say in the page that the model is an untrained demo (its output is noise).
        limits: request bounds.
    """

    def __init__(
        self,
        translator: AttentionSource,
        description: str = "",
        untrained: bool = False,
        limits: Limits = Limits(),
    ) -> None:
        self.translator = translator
        self.description = description
        self.untrained = untrained
        self.limits = limits
        self._lock = threading.Lock()

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
            JS=asset("explorer.js"),
            MODEL=html.escape(self.description),
            NOTE=note,
            MAX_CHARS=str(self.limits.max_chars),
        )

    def info(self) -> dict[str, Any]:
        return {"model": self.description, "untrained": self.untrained, "limits": asdict(self.limits)}

    def parse(self, body: bytes) -> tuple[str, int]:
        """Validate a request body: ``(sentence, beam_size)`` or :class:`RequestError`."""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RequestError(400, f"the request body must be JSON in UTF-8: {err}") from None
        if not isinstance(payload, dict):
            raise RequestError(400, f'expected a JSON object {{"sentence": …}}, got {type(payload).__name__}')
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
                view = self.translator.attention(sentence, beam_size=beam)
        except ValueError as err:  # e.g. too many subwords for the model's positions
            raise RequestError(400, str(err)) from None
        kinds = transformer_kinds(view.maps, view.src_tokens, view.tgt_tokens)
        data = explorer_data(kinds, title="Attention", subtitle=f"{sentence}  →  {view.translation}")
        data.update(source=sentence, translation=view.translation, beam_size=beam, untrained=self.untrained)
        return data


def _handler(app: AttentionApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "qkv"
        timeout = 15  # seconds: a client that stops sending does not hold a thread forever

        def log_message(self, format: str, *args) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict) -> None:
            self._send(
                status,
                json.dumps(data, ensure_ascii=False).encode("utf-8"),
                "application/json; charset=utf-8",
            )

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, app.page().encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/api/info":
                self._json(200, app.info())
            else:
                self._json(404, {"error": f"no such page: {path}"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/api/translate":
                self._json(404, {"error": f"no such endpoint: {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._json(411, {"error": "a Content-Length header is required"})
                return
            if length < 0 or length > app.limits.max_body_bytes:
                self.close_connection = True  # do not read a body that large
                self._json(
                    413,
                    {"error": f"request body of {length} bytes; the limit is {app.limits.max_body_bytes}"},
                )
                return
            body = self.rfile.read(length)
            try:
                self._json(200, app.translate(body))
            except RequestError as err:
                self._json(err.status, {"error": str(err)})
            except Exception:
                log.exception("request failed")
                self._json(500, {"error": "internal error while running the model (see the server log)"})

    return Handler


def make_server(app: AttentionApp, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``app`` (port 0 picks a free port: see ``server.server_address``).

    Example:
        >>> server = make_server(AttentionApp(Translator.load("ckpt")), port=0)    # doctest: +SKIP
        >>> threading.Thread(target=server.serve_forever, daemon=True).start()     # doctest: +SKIP
    """
    server = ThreadingHTTPServer((host, port), _handler(app))
    server.daemon_threads = True
    return server


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
