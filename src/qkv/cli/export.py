"""`qkv export`: a trained translation checkpoint out to Hugging Face, CTranslate2 or ONNX, unchanged."""

from __future__ import annotations

import argparse

from qkv.cli import CliError

EXAMPLES = """\
examples:
  qkv export --model runs/de-en/best --to hf --out exported/hf
  qkv export --model runs/de-en/best --to ctranslate2 --out exported/ct2
  qkv export --model runs/de-en/best --to ctranslate2 --quantization int8 --out exported/ct2-int8
  qkv export --model runs/de-en/best --to onnx --out exported/onnx

then, in Python:
  tok = AutoTokenizer.from_pretrained("exported/hf"); hf = MarianMTModel.from_pretrained("exported/hf")
  tok.batch_decode(hf.generate(**tok(["Ein Hund läuft."], return_tensors="pt")), skip_special_tokens=True)
  ct2 = ctranslate2.Translator("exported/ct2")     # takes and returns tokens: tokenizer.json's strings

Each format computes the qkv model itself (greedy outputs equal token for token; int8 is approximate);
what a format cannot express is refused with the option named, exit 2, nothing written.
Needs: --to hf: pip install 'qkv[hf]'; --to ctranslate2/onnx: pip install 'qkv[export]'.
"""

EXTRAS = {"hf": "hf", "ctranslate2": "export", "onnx": "export"}


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a translation model to Hugging Face, CTranslate2 or ONNX",
        description="Export a qkv translation checkpoint folder to another library's format, computing the "
        "same function: hf (a MarianMTModel folder with its tokenizer), ctranslate2 (a CTranslate2 model), "
        "onnx (encoder and decoder-step graphs with the KV cache as inputs/outputs).",
        epilog=EXAMPLES,
    )
    p.add_argument("--model", required=True, help="checkpoint folder, e.g. runs/de-en/best")
    p.add_argument("--to", required=True, choices=("hf", "ctranslate2", "onnx"), help="the format to write")
    p.add_argument("--out", required=True, help="output folder (absent or empty, unless --force)")
    p.add_argument(
        "--quantization", default="float32", choices=("float32", "int16", "int8"),
        help="ctranslate2 only: weight type (float32 is exact)",
    )
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.interop.export import export

    try:
        if args.to == "hf":
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        out = export(args.model, args.to, args.out, quantization=args.quantization, overwrite=args.force)
    except ImportError as err:
        raise CliError(
            f"--to {args.to} needs {err.name or 'an optional package'}: pip install 'qkv[{EXTRAS[args.to]}]'"
        ) from err
    print(f"wrote {out} ({args.to}{', ' + args.quantization if args.to == 'ctranslate2' else ''})")
    return 0
