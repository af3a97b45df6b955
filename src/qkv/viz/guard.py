"""What ``qkv serve`` checks before a request reaches the model: who may ask, and whether the body is sane.

- **DNS rebinding**: a page on ``evil.example`` whose name resolves to 127.0.0.1 sends ``Host: evil.example``.
  Only local names (``localhost``, ``127.0.0.1``, ``[::1]``, with the server's port or none) are accepted,
  plus the address the user bound explicitly and the names given with ``--allow-host``; binding a wildcard
  address (``0.0.0.0``, ``::``) accepts any name (the user asked for the network).
- **Cross-site requests**: a POST whose ``Origin`` is not this server (``http://`` + its Host), an
  ``Origin: null``, or ``Sec-Fetch-Site: cross-site`` is refused (403), and a body that is not
  ``application/json`` (the type a cross-site form or a "simple" fetch cannot send) is refused (415).
- **Malformed JSON**: invalid UTF-8, lone surrogates, nesting deeper than :data:`MAX_DEPTH`, integers of
  more than :data:`MAX_INT_DIGITS` digits, ``NaN``/``Infinity`` are all a 400 with a message, never a 500.

Every refusal is a :class:`RequestError` carrying its HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARDS = ("", "0.0.0.0", "::", "[::]")
MAX_DEPTH = 32
MAX_INT_DIGITS = 32


class RequestError(ValueError):
    """A request the app refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The host names a request may carry in ``Host`` (without the port), or ``None`` for any (wildcard bind)."""
    host = bind_host.strip().lower()
    if host in WILDCARDS:
        return None
    names = set(LOCAL_NAMES) | {n.strip().lower() for n in extra if n.strip()}
    names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    return frozenset(names)


def split_host(value: str) -> tuple[str, int | None]:
    """``"localhost:8000"`` -> ``("localhost", 8000)``; ``"[::1]"`` -> ``("[::1]", None)``; bad -> RequestError."""
    value = value.strip().lower()
    name, port = value, None
    colon = value.rfind(":")
    if colon > value.rfind("]"):  # a port after the name (IPv6 names are in brackets)
        name, digits = value[:colon], value[colon + 1 :]
        if not digits.isdigit() or len(digits) > 5:
            raise RequestError(400, f"bad Host header {value!r}: the port must be a number")
        port = int(digits)
    if not name:
        raise RequestError(400, f"bad Host header {value!r}")
    return name, port


def check_host(header: str | None, allowed: frozenset[str] | None, port: int) -> None:
    """Refuse a request whose ``Host`` is not one this server answers to (DNS rebinding)."""
    if header is None:
        raise RequestError(400, "a Host header is required")
    name, got_port = split_host(header)
    if allowed is None:
        return
    if name not in allowed or (got_port is not None and got_port != port):
        raise RequestError(
            403,
            f"Host {header!r} is not this server: it answers to {', '.join(sorted(allowed))} on port {port} "
            "(start qkv serve with --allow-host NAME, or --host ADDRESS, to accept another name)",
        )


def _param(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name.strip().lower(), value.strip().strip('"').lower()


def check_post_headers(headers, host_header: str) -> None:
    """Refuse cross-site POSTs (foreign ``Origin``, ``Sec-Fetch-Site: cross-site``) and non-JSON bodies."""
    origin = headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin.strip().lower())
        if origin.strip().lower() == "null" or parts.scheme != "http" or parts.netloc != host_header.strip().lower():
            raise RequestError(403, f"cross-origin request refused: Origin {origin!r} is not this server")
    if (headers.get("Sec-Fetch-Site") or "").strip().lower() == "cross-site":
        raise RequestError(403, "cross-site request refused (Sec-Fetch-Site: cross-site)")
    content_type = (headers.get("Content-Type") or "").split(";")
    media = content_type[0].strip().lower()
    params = dict(_param(p) for p in content_type[1:])
    if media != "application/json":
        raise RequestError(415, f"the body must be Content-Type: application/json, got {media or 'none'!r}")
    if params.get("charset", "utf-8") not in ("utf-8", "utf8"):
        raise RequestError(415, f"the body must be UTF-8, got charset={params['charset']!r}")


def _nesting_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` outside strings (scanned before parsing: no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise RequestError(400, f"a number of {len(digits.lstrip('-'))} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(digits)


def _refuse_constant(name: str):
    raise RequestError(400, f"{name} is not a JSON number")


def _check_strings(value, path: str = "body") -> None:
    """Refuse lone surrogates (``"\\ud800"``) anywhere: they cannot be encoded, echoed or tokenized."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(400, f"{path} holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k, f"{path} key")
            _check_strings(v, f"{path}.{k}" if isinstance(k, str) and k.isidentifier() else path)
    elif isinstance(value, list):
        for v in value:
            _check_strings(v, path)


def parse_json_body(body: bytes):
    """Decode a request body: UTF-8 JSON, shallow, no huge integers, no NaN, no lone surrogates."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"the request body must be JSON in UTF-8: {err}") from None
    depth = _nesting_depth(text)
    if depth > MAX_DEPTH:
        raise RequestError(400, f"the JSON is nested {depth} levels deep; at most {MAX_DEPTH} are accepted")
    try:
        payload = json.loads(text, parse_int=_parse_int, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise RequestError(400, f"the request body must be JSON in UTF-8: {err}") from None
    except RecursionError:  # the scan above should make this unreachable; never a 500 if it is not
        raise RequestError(400, "the JSON is nested too deeply") from None
    _check_strings(payload)
    return payload
