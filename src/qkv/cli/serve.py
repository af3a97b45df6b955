"""`qkv serve`: a local web app to translate sentences and explore their attention."""

from __future__ import annotations

from qkv.cli import CliError
from qkv.cli._common import add_precision_option, print_precision
from qkv.cli.options import add_device_options, add_search_options

EXAMPLES = """\
examples:
  qkv serve --model runs/de-en/best            # then open http://127.0.0.1:8000/
  qkv serve --model runs/de-en/averaged --alpha 1.4 --early-stopping
  qkv serve --port 0                           # an untrained demo model on a free port
  qkv serve --model runs/de-en/best --host 0.0.0.0 --allow-host mybox.local
"""


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="a local web app: translate a sentence and explore its attention",
        description="Serve a web page that translates a sentence and shows every attention map of it.",
        epilog=EXAMPLES,
    )  # fmt: skip
    p.add_argument("--model", help="checkpoint folder (default: a small seeded untrained demo model)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    add_device_options(p, default="cpu")
    add_precision_option(p, what="decoding")
    add_search_options(p, beam=False)
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (repeatable; by default only localhost, 127.0.0.1, [::1] "
        "and the --host address: other names are refused against DNS rebinding)",
    )
    p.add_argument(
        "--max-connections", type=int, default=128, help="connections open at once (more get a 503)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from qkv.cli._models import load_translator
    from qkv.viz.guard import allowed_hosts
    from qkv.viz.serve import AttentionApp, Limits, make_server

    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0 … 65535, got {args.port}")
    if not 1 <= args.max_connections <= 10_000:
        raise CliError(f"--max-connections must be 1 … 10000, got {args.max_connections}")
    translator, description, untrained = load_translator(args.model, args.device, args.precision)
    if not untrained:
        print_precision(args.precision, translator.device)
    translator.early_stopping = args.early_stopping
    limits = Limits(max_connections=args.max_connections)
    app = AttentionApp(translator, description, untrained=untrained, limits=limits, alpha=args.alpha)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # one line per request
    try:
        server = make_server(app, args.host, args.port, args.allow_host)
    except OSError as err:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    host, port = server.server_address[:2]
    if untrained:
        print("note: no --model given: serving an untrained demo model (translations are noise)")
    hosts = allowed_hosts(args.host, args.allow_host)
    if hosts is None:
        print(f"note: listening on {args.host}: every host name is accepted (bound to the network on purpose)")
    print(f"serving {description} on http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
