"""The ``qkv`` command line: one sub-command per module in this package.

Each command module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a function
taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name of the module in qkv.cli for each command, in the order `qkv --help` lists them
COMMANDS = [
    "demo", "train", "translate", "evaluate",
    "attention", "explain", "positions", "serve",
    "classify", "vit", "export", "plot",
]


class CliError(Exception):
    """An error the user can fix (bad path, bad option value): printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qkv",
        description="The Transformer of 'Attention Is All You Need': "
        "train, translate, evaluate, look inside.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"qkv.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, FileNotFoundError, ValueError) as err:
        print(f"qkv {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qkv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
