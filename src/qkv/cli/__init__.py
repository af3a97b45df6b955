"""The ``qkv`` command line: one sub-command per module in this package.

Each command module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a function
taking the parsed ``argparse.Namespace`` and returning an exit code. Every parser is a
:class:`qkv.cli.parser.Parser`: defaults and examples in ``--help``, one-line errors (exit 2), ``--config``.
"""

from __future__ import annotations

import importlib
import os
import sys

from qkv import __version__
from qkv.cli.parser import Parser

# name of the module in qkv.cli for each command, in the order `qkv --help` lists them
COMMANDS = [
    "demo", "train", "translate", "evaluate", "average",
    "attention", "explain", "positions", "serve",
    "classify", "vit", "export", "plot",
]


class CliError(Exception):
    """An error the user can fix (bad path, bad option value): printed without a traceback."""


#: the package to install for an optional module a command needs (the rest: ``pip install NAME``)
INSTALL = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml (or 'qkv[config]')",
    "transformers": "'qkv[hf]'",
    "sentencepiece": "'qkv[hf]'",
    "ctranslate2": "'qkv[export]'",
    "onnx": "'qkv[export]'",
    "onnxruntime": "'qkv[export]'",
}

EXAMPLES = """\
examples:
  qkv demo                                   # train a small model on a built-in task, no download
  qkv train --data ../shared/data/multi30k --src de --tgt en --out runs/de-en
  qkv translate --model runs/de-en/best "Ein Mann fährt Fahrrad."
  qkv COMMAND --help                         # the options of one command, with their defaults
"""


def build_parser() -> Parser:
    parser = Parser(
        prog="qkv",
        description="The Transformer of 'Attention Is All You Need': "
        "train, translate, evaluate, look inside.",
        epilog=EXAMPLES,
    )
    parser.add_argument("--version", action="version", version=f"qkv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"qkv.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a parse error already printed on one line
        return 0 if done.code is None else done.code if isinstance(done.code, int) else 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what was given, not defaulted (train --resume)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    from qkv.train.process import set_up_process

    # before any work: large freed blocks stay in the process (no page faults for each step's logits) and
    # oneDNN keeps the kernels of every batch shape of an epoch (issue 17)
    set_up_process()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, where it is caught, not at exit
        return code
    except (CliError, FileNotFoundError, ValueError) as err:
        print(f"qkv {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # a missing optional package: say what to install
        if (err.name or "").split(".")[0] == "qkv":
            raise  # a bug, not a missing package
        top = (err.name or "").split(".")[0] if isinstance(err, ModuleNotFoundError) else ""
        message = f"needs the optional package {top}: pip install {INSTALL.get(top, top)}" if top else err
        print(f"qkv {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `qkv ... | head`: the reader left; stop quietly
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a program killed by the signal
    except KeyboardInterrupt:
        print(f"qkv {args.command}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
