"""Pieces of the report that ``bench/gpu.sh`` writes (not part of the library; no torch import except ``header``).

Subcommands, each printing Markdown to stdout:

- ``header``: the versions that matter (torch, CUDA, cuDNN, GPU, driver-side facts torch can see, Python,
  transformers, tokenizers, sacrebleu, safetensors), as a bullet list;
- ``throughput EAGER_LOG [COMPILED_LOG ...]``: one table from the outputs of several
  ``bench/train_throughput.py`` runs (the eager rows from the first log, which measured all implementations
  side by side; the compiled rows from the others, one implementation each), with qkv / best other per mode;
- ``train RUN_DIR``: the steps, training time and test scores of a ``qkv train`` run (its ``results.json``).

Examples:
    python bench/gpu_report.py header
    python bench/gpu_report.py throughput out/1a.out out/1b.out out/1c.out out/1d.out
    python bench/gpu_report.py train /tmp/qkv-gpu/train-de-en
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

IMPLEMENTATIONS = ("qkv", "torch", "marian")
MODES = ("eager", "compiled")


# -- header -------------------------------------------------------------------------------------------------
def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def header() -> str:
    """Bullet lines: torch and its CUDA build, the GPU (or that there is none), the other packages."""
    import torch

    lines = [f"- python {platform.python_version()} ({sys.executable}), {platform.machine()}"]
    cuda = torch.version.cuda or "none (CPU build)"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "n/a"
    lines.append(f"- torch {torch.__version__}, CUDA build {cuda}, cuDNN {cudnn}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(
                f"- GPU {i}: {p.name}, compute capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
                f"{p.total_memory / 2**30:.1f} GiB; bf16 supported: {torch.cuda.is_bf16_supported()}"
            )
    else:
        lines.append("- GPU: none visible to torch (torch.cuda.is_available() is False)")
    others = ", ".join(f"{p} {version(p)}" for p in ("transformers", "tokenizers", "sacrebleu", "safetensors",
                                                     "triton", "matplotlib"))
    lines.append(f"- {others}")
    return "\n".join(lines)


# -- throughput ---------------------------------------------------------------------------------------------
ROW = re.compile(r"^\s*(qkv|torch|marian) (eager|compiled)\s{2,}")


def parse_throughput(text: str) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """The result table of one ``train_throughput.py`` output: (column names, {(impl, mode): cells})."""
    columns: list[str] = []
    rows: dict[tuple[str, str], list[str]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("model ") and i + 1 < len(lines) and set(lines[i + 1].replace(" ", "")) == {"-"}:
            columns = re.split(r"\s{2,}", line.strip())
        m = ROW.match(line)
        if m and columns:
            rows[(m.group(1), m.group(2))] = re.split(r"\s{2,}", line.strip())
    return columns, rows


def tokens_per_s(cells: list[str], columns: list[str]) -> float:
    return float(cells[columns.index("tgt tokens/s")].replace(",", ""))


def throughput(eager_log: Path, compiled_logs: list[Path]) -> str:
    """The merged Markdown table and the qkv / best other ratios (eager, compiled, best of each)."""
    columns: list[str] = []
    merged: dict[tuple[str, str], list[str]] = {}
    for index, path in enumerate([eager_log, *compiled_logs]):
        if not path.is_file():
            continue
        cols, rows = parse_throughput(path.read_text(errors="replace"))
        for key, cells in rows.items():
            first = index == 0
            # eager rows from the side-by-side run; compiled rows (and eager ones it lacks) from the others
            if (key[1] == "eager" and (first or key not in merged)) or (key[1] == "compiled" and not first):
                merged[key] = cells
                columns = columns or cols
    if not merged:
        return "No throughput table could be read (every run failed; see the outputs below)."
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for impl in IMPLEMENTATIONS:
        for mode in MODES:
            cells = merged.get((impl, mode))
            lines.append("| " + " | ".join(cells if cells else [f"{impl} {mode}"] + ["not measured"] +
                                           [""] * (len(columns) - 2)) + " |")
    lines.append("")
    for mode in (*MODES, None):
        ours = {k: v for k, v in merged.items() if k[0] == "qkv" and mode in (None, k[1])}
        others = {k: v for k, v in merged.items() if k[0] != "qkv" and mode in (None, k[1])}
        if not ours or not others:
            lines.append(f"- qkv / best other ({mode or 'best of each'}): not available (missing rows)")
            continue
        best_ours = max(ours, key=lambda k: tokens_per_s(ours[k], columns))
        best_other = max(others, key=lambda k: tokens_per_s(others[k], columns))
        ratio = tokens_per_s(ours[best_ours], columns) / tokens_per_s(others[best_other], columns)
        lines.append(f"- qkv / best other ({mode or 'best of each'}): **{ratio:.2f}×** "
                     f"({' '.join(best_ours)} vs {' '.join(best_other)})")
    return "\n".join(lines)


# -- training run -------------------------------------------------------------------------------------------
def train_summary(run: Path) -> str:
    """Steps, epochs, training seconds, why it stopped, and every test score of ``run/results.json``."""
    path = run / "results.json"
    if not path.is_file():
        return f"No {path}: the run did not finish (see its output below)."
    results = json.loads(path.read_text())
    t = results["train"]
    lines = [
        f"- {t['steps']} steps, {t['epochs']} epochs, {t['elapsed_seconds']:.0f} s of training "
        f"(stopped by {t.get('stopped_by', '?')}); best validation {t.get('best_metric', '?')} "
        f"{t.get('best_value', float('nan')):.3f}",
        "",
        "| checkpoint | sacreBLEU | lowercased BLEU | chrF | beam | test sentences | decode s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in results.get("test", {}).items():
        lines.append(f"| {name} | {s['bleu']:.1f} | {s['bleu_lowercase']:.1f} | {s['chrf']:.1f} | {s['beam']} | "
                     f"{s.get('n_sentences', '?')} | {s.get('seconds', '?')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("header", help="versions of torch, CUDA, the GPU and the packages")
    p = sub.add_parser("throughput", help="merge train_throughput.py outputs into one table")
    p.add_argument("eager_log", type=Path)
    p.add_argument("compiled_logs", type=Path, nargs="*")
    p = sub.add_parser("train", help="summarise a qkv train run folder")
    p.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    if args.command == "header":
        print(header())
    elif args.command == "throughput":
        print(throughput(args.eager_log, args.compiled_logs))
    else:
        print(train_summary(args.run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
