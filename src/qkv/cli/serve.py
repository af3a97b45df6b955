"""`qkv serve`: a local web app to translate sentences and explore their attention."""

from __future__ import annotations

from qkv.cli import CliError


def register(sub) -> None:
    p = sub.add_parser("serve", help="a local web app: translate a sentence and explore its attention")
    p.add_argument("--model", help="checkpoint folder (default: a small seeded untrained demo model)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.set_defaults(func=run)


def run(args) -> int:
    from qkv.cli.attention import load_translator
    from qkv.viz.serve import AttentionApp, make_server

    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0 … 65535, got {args.port}")
    translator, description, untrained = load_translator(args.model, args.device)
    app = AttentionApp(translator, description, untrained=untrained)
    try:
        server = make_server(app, args.host, args.port)
    except OSError as err:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    host, port = server.server_address[:2]
    if untrained:
        print("note: no --model given: serving an untrained demo model (translations are noise)")
    print(f"serving {description} on http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
