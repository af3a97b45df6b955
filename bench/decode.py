"""Decoding speed (issue 6): greedy and beam search, with and without the KV cache, against Hugging Face.

Measures sentences/s and generated tokens/s of :func:`qkv.decode.greedy_search` and
:func:`qkv.decode.beam_search` on a randomly initialised Transformer, and — when ``transformers`` is
importable — of ``MarianMTModel.generate()`` holding the *same weights* (a post-LN, ReLU, sinusoidal,
scaled-embedding Marian of the same sizes). Greedy outputs of the two must agree token for token; the
agreement is printed.

Hugging Face's beam search divides by |Y|^α rather than GNMT's ((5 + |Y|) / 6)^α and stops differently, so
beam outputs may differ slightly; the work is comparable (same beam, same maximum length).

    python bench/decode.py --preset small --batch 32 --src-len 20 --n 3
    python bench/decode.py --preset base --batch 64 --src-len 30 --device cuda

A random model rarely predicts EOS, so most sentences run to the maximum length (source length + 50, §6.1):
tokens/s is the figure to compare. With ``--checkpoint`` the model is a trained one (a joint-vocabulary
Transformer from ``qkv train`` or ``bench/translation.py``) and the input is real text — by default the
Multi30k test set of its source language — sorted by length into batches of ``--batch`` sentences, as
``qkv translate`` does; sentences then end at their own lengths:

    python bench/decode.py --checkpoint runs/bench-cpu-de-en/averaged --batch 64 --n 1

With ``--checkpoint`` the model is also exported (``qkv export``, issue 12) to a temporary folder and decoded
by the engines people deploy with, side by side in the same run: Hugging Face ``generate()`` on the
reloaded ``MarianMTModel`` folder, CTranslate2 in float32 and int8, and onnxruntime running the exported
encoder / decoder-step graphs under qkv's own greedy and beam search. ``= qkv`` counts the outputs identical
to qkv's output of the same search (greedy outputs must all be; beam searches differ in their length penalty
and stopping rule: HF and CTranslate2 divide by |Y|^α). Every engine gets ``--threads`` threads:

    python bench/decode.py --checkpoint runs/bench-cpu-de-en/averaged --threads 2 --batch 64 --n 1 --cache-only

``--precision fp32,bf16,int8`` (issue 17) also runs qkv's searches on the low-precision copies that
``qkv translate --precision bf16|int8`` decodes with (:mod:`qkv.decode.quantize`: bf16 weights, or the linear
layers dynamically quantized to int8; ``auto``: bf16 where the device has it fast), rows ``qkv bf16 …`` and
``qkv int8 …``; ``= qkv`` then counts the outputs identical to qkv's fp32 ones, and the summary compares every
qkv row with CTranslate2 float32 and int8. The timed runs go round-robin (one run of each decoder per round,
``--n`` rounds, the median reported), so that a change of load on a shared machine hits all decoders alike.
The process keeps freed memory and caches more oneDNN kernels as the ``qkv`` command does
(:func:`qkv.train.process.set_up_process`; since session 10 / 17, for every engine in the run):

    python bench/decode.py --checkpoint runs/bench-cpu-de-en/averaged --threads 2 --batch 64 --n 3 \
        --cache-only --engines ct2,ct2-int8 --no-hf --precision fp32,bf16,int8

Engines sharing one process slow each other down: on a 2-core CPU, qkv fp32 greedy decoded 284 sentences/s
alone and 184–208 in a process that also ran CTranslate2, and CTranslate2 int8 354–401 alone against 288 beside
qkv (session 12, docs/performance.md). ``--isolate`` runs each decoder in a child process of its own, as a
user runs one engine, still round-robin: each round, one timed run of every child in turn while the others
wait:

    python bench/decode.py --checkpoint runs/bench-cpu-de-en/averaged --threads 2 --batch 64 --n 3 \
        --cache-only --engines ct2,ct2-int8 --no-hf --precision fp32,bf16,int8 --isolate
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from _common import Timing, add_device_options, benchmark, compare, setup_device
from qkv import Transformer, TransformerConfig
from qkv.decode import BOS, EOS, PAD, beam_search, greedy_search, max_output_lengths, strip_specials
from qkv.decode.quantize import decoding_copy
from qkv.train.process import set_up_process

ENGINES = ("hf", "ct2", "ct2-int8", "onnx")
#: how each engine's rows begin
ENGINE_NAMES = {
    "hf": "HF generate", "ct2": "CTranslate2 float32", "ct2-int8": "CTranslate2 int8", "onnx": "onnxruntime",
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="small", help="model preset: tiny, small, base, big (default small)"
    )
    parser.add_argument("--vocab", type=int, default=8000, help="shared vocabulary size (default 8000)")
    parser.add_argument("--batch", type=int, default=32, help="sentences per batch (default 32)")
    parser.add_argument("--src-len", type=int, default=20, help="source length in tokens, EOS included")
    parser.add_argument(
        "--max-len-b", type=int, default=50, help="output limit = src length + this (§6.1: 50)"
    )
    parser.add_argument("--beam", type=int, default=5, help="beam size (default 5)")
    parser.add_argument("--alpha", type=float, default=0.6, help="length penalty α (default 0.6)")
    parser.add_argument("--n", type=int, default=3, help="timed repetitions of each measurement (default 3)")
    add_device_options(parser)
    parser.add_argument("--no-hf", action="store_true", help="skip the Hugging Face comparison")
    parser.add_argument(
        "--engines", default=",".join(ENGINES),
        help="with --checkpoint: exported engines to run, comma-separated from hf,ct2,ct2-int8,onnx (default all)",
    )
    parser.add_argument("--cache-only", action="store_true", help="skip the (slow) runs without the KV cache")
    parser.add_argument(
        "--checkpoint", default=None, help="a trained translation checkpoint folder (default: a random model)"
    )
    parser.add_argument(
        "--data", default="../shared/data/multi30k", help="with --checkpoint: Multi30k-style folder to read from"
    )
    parser.add_argument("--src", default="de", help="with --checkpoint: source language suffix (default de)")
    parser.add_argument("--tgt", default="en", help="with --checkpoint: reference language, for BLEU (default en)")
    parser.add_argument("--split", default="test", help="with --checkpoint: train, val or test (default test)")
    parser.add_argument("--limit", type=int, default=None, help="with --checkpoint: at most this many sentences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--precision", default="fp32",
        help="qkv's decoding precisions, comma-separated from auto,fp32,bf16,int8 (default fp32; e.g. fp32,int8)",
    )  # fmt: skip
    parser.add_argument(
        "--isolate", action="store_true",
        help="run each decoder in a process of its own, timed round-robin across them, instead of all in this "
        "process: engines sharing a process slow each other down (docs/performance.md)",
    )  # fmt: skip
    parser.add_argument(
        "--early-stopping", action="store_true",
        help="also run qkv's beam searches with early_stopping=True (rows '... early'): a sentence ends once it "
        "holds K finished hypotheses, CTranslate2's rule (its default patience 1)",
    )  # fmt: skip
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # (--isolate's child: one decoder)
    parser.add_argument("--only-out", default=None, help=argparse.SUPPRESS)  # (where the child writes it)
    return parser.parse_args(argv)


# -- Hugging Face: a MarianMTModel with the qkv weights (qkv.interop.export_hf) ------------------------------
def hf_generate(
    hf, src: torch.Tensor, max_new: int, beam: int, alpha: float, use_cache: bool
) -> list[list[int]]:
    out = hf.generate(
        input_ids=src,
        attention_mask=(src != PAD).long(),
        max_new_tokens=max_new,
        num_beams=beam,
        do_sample=False,
        **(dict(length_penalty=alpha, early_stopping=False) if beam > 1 else {}),
        use_cache=use_cache,
        suppress_tokens=[PAD, BOS],  # as qkv.decode: PAD and BOS are never outputs
        num_return_sequences=1,
    )  # (B, 1 + T): decoder_start (BOS), the tokens, EOS, then PAD
    limits = ((src != PAD).sum(1) + max_new - int((src != PAD).sum(1).max())).tolist()  # qkv's own limits (§6.1)
    return [y[:n] for y, n in zip(strip_specials(out.tolist()), limits)]  # greedy: exactly qkv's cut


def random_setup(args, device: torch.device):
    """A random model of ``--preset`` and one batch of random sources of ``--src-len`` tokens."""
    torch.manual_seed(args.seed)
    config = TransformerConfig.preset(args.preset, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab)
    model = Transformer(config).to(device).eval()
    g = torch.Generator().manual_seed(args.seed)
    src = torch.randint(4, args.vocab, (args.batch, args.src_len), generator=g)
    src[:, -1] = EOS
    what = f"random preset {args.preset}, vocab {args.vocab}, batch {args.batch}, source length {args.src_len}"
    return model, [src.to(device)], what, None


def checkpoint_setup(args, device: torch.device):
    """The trained model of ``--checkpoint``, real sentences sorted by length into batches, and a scorer."""
    from qkv.data.batching import collate
    from qkv.data.multi30k import find_splits
    from qkv.data.text import read_parallel
    from qkv.scoring import score
    from qkv.tasks.translation import Translator

    translator = Translator.load(args.checkpoint, device=device)
    src_path, tgt_path = find_splits(args.data, args.src, args.tgt)[args.split]
    text = read_parallel(src_path, tgt_path)
    sources, references = text.src[: args.limit], text.tgt[: args.limit]
    ids = translator.encode_sources(sources)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together, as qkv translate
    chunks = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
    batches = [collate([(ids[i], []) for i in chunk]).src.to(device) for chunk in chunks]  # (B, S) each
    references = [references[i] for i in order]  # in batch order, as the outputs come
    what = (
        f"checkpoint {args.checkpoint} ({translator.model.num_parameters():,} parameters), "
        f"{len(sources)} sentences of {src_path}, batches of {args.batch}"
    )

    def bleu(outputs: list[list[int]]) -> float:
        return score([translator.tgt_tokenizer.decode(y) for y in outputs], references).bleu

    return translator.model, batches, what, bleu


def hf_model(args, model: Transformer, export_dir: Path | None, device: torch.device):
    """The Hugging Face copy: the exported folder reloaded with ``from_pretrained`` (``--checkpoint``) or, for
    a random model, ``qkv.interop.export_hf.to_marian`` in memory. ``None`` when transformers is missing."""
    try:
        import transformers
    except ImportError:
        print("Hugging Face comparison skipped: `transformers` is not installed (pip install transformers)")
        return None
    from qkv.interop.export_hf import to_marian

    if export_dir is None:
        hf, how = to_marian(model), "MarianMTModel with the same weights"
    else:
        from qkv.interop.export import export

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()  # not one "max_new_tokens overrides max_length" per batch
        export(args.checkpoint, "hf", export_dir / "hf")
        hf = transformers.MarianMTModel.from_pretrained(export_dir / "hf")
        how = f"MarianMTModel exported by qkv export and reloaded from {export_dir / 'hf'}"
    hf = hf.to(device).eval()
    return hf, f"transformers {transformers.__version__}: {how}"


def engine_runs(args, batches: list[torch.Tensor], export_dir: Path, engines: list[str]) -> dict:
    """Decoders of the exported CTranslate2 (float32, int8) and ONNX models: name -> a function of all batches."""
    from qkv.interop.export import export

    threads = torch.get_num_threads()
    sources = [[[t for t in row if t != PAD][:-1] for row in src.tolist()] for src in batches]  # ids, no EOS
    runs = {}
    searches = ((1, "greedy"), (args.beam, f"beam {args.beam}"))
    for engine, quantization in (("ct2", "float32"), ("ct2-int8", "int8")):
        if engine not in engines:
            continue
        import ctranslate2

        from qkv.interop.export_ctranslate2 import CTranslate2Model

        export(args.checkpoint, "ctranslate2", export_dir / engine, quantization=quantization)
        ct2 = CTranslate2Model(export_dir / engine, threads=threads)
        print(f"CTranslate2 {ctranslate2.__version__} {quantization}: exported to {export_dir / engine}")
        for beam, label in searches:
            kwargs = dict(beam_size=beam, alpha=args.alpha, max_len_b=args.max_len_b)
            runs[f"CTranslate2 {quantization} {label}"] = lambda ct2=ct2, kwargs=kwargs: [
                y for ids in sources for y in ct2.decode(ids, **kwargs)
            ]
    if "onnx" in engines:
        import onnxruntime

        from qkv.interop.export_onnx import OnnxTransformer

        export(args.checkpoint, "onnx", export_dir / "onnx")
        onnx_model = OnnxTransformer(export_dir / "onnx", threads=threads)
        print(f"onnxruntime {onnxruntime.__version__}: exported to {export_dir / 'onnx'}, qkv's searches on top")
        runs["onnxruntime greedy"] = lambda: [
            y for src in batches for y in greedy_search(onnx_model, src.cpu(), max_len_b=args.max_len_b)
        ]
        runs[f"onnxruntime beam {args.beam}"] = lambda: [
            y for src in batches for y in beam_search(
                onnx_model, src.cpu(), beam_size=args.beam, alpha=args.alpha, max_len_b=args.max_len_b
            )
        ]
    return runs


def time_runs(runs: dict, args, device) -> dict:
    """Time every run: one warm-up whose outputs are kept, then ``--n`` timed rounds, round-robin over the
    decoders. Returns ``{name: (outputs, per-round seconds)}``."""
    with torch.inference_mode():
        outputs_of = {name: fn() for name, fn in runs.items()}  # the warm-ups, and the outputs compared below
        timings = compare(runs, device, warmup=0, iters=args.n)
    return {name: (outputs_of[name], timings[name].times) for name in runs}


def time_isolated(names: list[str], argv: list[str], n: int) -> dict:
    """As :func:`time_runs`, each decoder in a child process of its own (this script with ``--only``), still
    round-robin: every child loads its decoder and runs the warm-up (one child at a time), then each round asks
    every child in turn for one timed run while the others wait, blocked on their input."""
    timed, children = {}, []
    with tempfile.TemporaryDirectory(prefix="qkv-decode-") as tmp:
        try:
            for i, name in enumerate(names):
                out = Path(tmp) / f"{i}.json"
                child = subprocess.Popen(
                    [sys.executable, __file__, *argv, "--only", name, "--only-out", str(out)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                children.append(child)
                for line in child.stdout:  # its header lines, then "ready": the warm-up is done
                    if line.strip() == "ready":
                        break
                else:
                    raise SystemExit(f"--isolate: the child process for {name!r} failed (see above)")
                timed[name] = (json.loads(out.read_text()), [])
            for _ in range(n):
                for name, child in zip(names, children):
                    child.stdin.write("run\n")
                    child.stdin.flush()
                    answer = child.stdout.readline()
                    if not answer:
                        raise SystemExit(f"--isolate: the child process for {name!r} died (see above)")
                    timed[name][1].append(float(answer))
        finally:
            for child in children:
                child.communicate("")  # end of input: the child exits
    return timed


def serve_timed_runs(fn, out: str, device) -> None:
    """``--isolate``'s child: the warm-up (its outputs to ``out``), "ready", then one timed run per input line,
    each answered with its seconds."""
    with torch.inference_mode():
        Path(out).write_text(json.dumps(fn()))
        print("ready", flush=True)
        for _ in sys.stdin:
            print(benchmark(fn, device, warmup=0, iters=1).times[0], flush=True)


def print_table(timed: dict, args, limits: list[int], n_sentences: int, bleu) -> dict:
    """One row per decoder of ``timed`` (:func:`time_runs`), the median round; returns
    ``{name: (seconds, outputs)}``."""
    results = {}
    print(
        f"\n{'decoder':32} {'sent/s':>9} {'tokens/s':>10} {'tokens':>8} {'s/run':>8}"
        + ("  BLEU" if bleu else "") + f"  {'= qkv':>9}"
    )
    for name, (outputs, times) in timed.items():
        seconds = Timing(times).median
        n_tokens = sum(len(y) + (len(y) < limit) for y, limit in zip(outputs, limits))  # + EOS, when there was one
        results[name] = (seconds, outputs)
        search = "greedy" if name.endswith("greedy") else f"beam {args.beam}"
        reference = results.get(f"qkv {search}", (None, None))[1]
        same = "" if reference is None else f"{sum(x == y for x, y in zip(outputs, reference))}/{n_sentences}"
        print(
            f"{name:32} {n_sentences / seconds:9.1f} {n_tokens / seconds:10.0f} {n_tokens:8d} {seconds:8.3f}"
            + (f"  {bleu(outputs):4.1f}" if bleu else "") + f"  {same:>9}"
        )
    return results


def qkv_precisions(spec: str, device: torch.device) -> list[str]:
    """``--precision`` -> the precisions to run (``auto`` resolved for ``device``, as qkv translate does)."""
    from qkv.tasks.translation.translator import resolve_decode_precision
    from qkv.train.precision import describe_precision

    chosen = []
    for name in (p.strip() for p in spec.split(",") if p.strip()):
        try:
            chosen.append(resolve_decode_precision(name, device))
        except ValueError as err:
            raise SystemExit(f"--precision: {err}") from None
        if name == "auto":
            print(describe_precision(name, device))
    return chosen or ["fp32"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    argv = [a for a in argv if a != "--isolate"]  # what --isolate's children are run with
    device, _ = setup_device(args)
    set_up_process()  # as the qkv command line does (qkv translate / serve); for every engine alike
    model, batches, what, bleu = (checkpoint_setup if args.checkpoint else random_setup)(args, device)
    config = model.config
    n_sentences = sum(len(src) for src in batches)
    print(
        f"qkv decoding benchmark: {what} (d_model {config.d_model}, {config.n_layers} layers), "
        f"max output source length + {args.max_len_b}, device {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {args.n} timed runs each after one warm-up"
    )

    def over_batches(decode):  # decode every batch, outputs in batch order
        return lambda: [y for src in batches for y in decode(src)]

    beam_kwargs = dict(beam_size=args.beam, alpha=args.alpha, max_len_b=args.max_len_b)
    caches = (True,) if args.cache_only else (True, False)
    runs = {}  # name -> a function decoding every batch
    precisions = qkv_precisions(args.precision, device)
    if args.only is not None:  # --isolate's child builds only its decoder
        precisions = [p for p in precisions if args.only.startswith(f"qkv {p} ")] or ["fp32"]
    for precision in ["fp32", *(p for p in dict.fromkeys(precisions) if p != "fp32")]:
        m = decoding_copy(model, precision)  # the copy qkv translate --precision decodes with
        for cache in caches if precision == "fp32" else (True,):
            name = "qkv" if precision == "fp32" else f"qkv {precision}"
            suffix = "" if cache else ", no cache"
            runs[f"{name} greedy{suffix}"] = over_batches(
                lambda src, m=m, cache=cache: greedy_search(m, src, max_len_b=args.max_len_b, use_cache=cache)
            )
            runs[f"{name} beam {args.beam}{suffix}"] = over_batches(
                lambda src, m=m, cache=cache: beam_search(m, src, **beam_kwargs, use_cache=cache)
            )
            if args.early_stopping and cache:
                runs[f"{name} beam {args.beam} early"] = over_batches(
                    lambda src, m=m: beam_search(m, src, **beam_kwargs, early_stopping=True)
                )
    if "fp32" not in precisions:
        runs = {n: fn for n, fn in runs.items() if not n.startswith("qkv ") or n.split()[1] in precisions}
    engines = [e for e in args.engines.split(",") if e and not (e == "hf" and args.no_hf)]
    if args.only is not None:
        engines = [e for e in engines if args.only.startswith(ENGINE_NAMES[e])]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SystemExit(f"--engines: unknown {unknown}; expected some of {','.join(ENGINES)}")
    with tempfile.TemporaryDirectory(prefix="qkv-export-") as tmp:
        export_dir = Path(tmp) if args.checkpoint else None
        hf = hf_model(args, model, export_dir, device) if "hf" in engines else None
        if hf is not None:
            hf, line = hf
            src = batches[-1][:2]
            with torch.no_grad():
                tgt = torch.randint(4, config.tgt_vocab_size, (2, 7)).to(device)
                hf_logits = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt).logits
                diff = (hf_logits - model(src, tgt)).abs().max()
            print(f"{line}, max |logit difference| = {diff:.2e}")
            for beam, label in ((1, "greedy"), (args.beam, f"beam {args.beam}")):
                for cache in caches:
                    name = f"HF generate {label}" + ("" if cache else ", no cache")
                    runs[name] = over_batches(
                        lambda src, beam=beam, cache=cache: hf_generate(
                            hf, src, int((src != PAD).sum(1).max()) + args.max_len_b, beam, args.alpha, cache
                        )
                    )
        if export_dir is not None:
            runs.update(engine_runs(args, batches, export_dir, [e for e in engines if e != "hf"]))
        if args.only is not None:  # --isolate's child: time one decoder for the parent
            serve_timed_runs(runs[args.only], args.only_out, device)
            return 0
        limits = [int(n) for src in batches for n in max_output_lengths(model, src, args.max_len_b)]
        timed = time_isolated(list(runs), argv, args.n) if args.isolate else time_runs(runs, args, device)
        results = print_table(timed, args, limits, n_sentences, bleu)
    print_summary(results, args, caches, n_sentences, hf is not None)
    return 0


def print_summary(results: dict, args, caches, n_sentences: int, with_hf: bool) -> None:
    """The KV cache speed-ups and every other decoder's speed relative to qkv's same search."""
    print()
    beam_name = f"qkv beam {args.beam}"
    if not args.cache_only:
        for name in ("qkv greedy", beam_name):
            print(f"KV cache speed-up, {name[4:]}: {results[name + ', no cache'][0] / results[name][0]:.2f}x")
    if with_hf:
        for qkv_name, hf_name in (
            ("qkv greedy", "HF generate greedy"),
            (beam_name, f"HF generate beam {args.beam}"),
        ):
            for suffix in ("" if cache else ", no cache" for cache in caches):
                a, b = results[qkv_name + suffix], results[hf_name + suffix]
                same = sum(x == y for x, y in zip(a[1], b[1]))
                print(
                    f"qkv / HF {qkv_name[4:] + suffix:18}: {b[0] / a[0]:.2f}x the speed of HF; "
                    f"identical outputs {same}/{n_sentences}"
                )
    ours_of = {f"qkv {p}" if p else "qkv": p or "fp32" for p in ("", "bf16", "int8")}
    for name, (seconds, _) in results.items():
        if name.startswith(("CTranslate2", "onnxruntime")):
            search = "greedy" if name.endswith("greedy") else f"beam {args.beam}"
            for ours in (f"{q} {search}{early}" for q in ours_of for early in ("", " early")):
                if ours in results:
                    print(f"{ours} vs {name}: qkv at {seconds / results[ours][0]:.2f}x its speed")
    for search in ("greedy", f"beam {args.beam}"):
        for low in ("bf16", "int8"):
            if f"qkv {low} {search}" in results and f"qkv {search}" in results:
                ratio = results[f"qkv {search}"][0] / results[f"qkv {low} {search}"][0]
                print(f"qkv {low} {search} vs qkv fp32 {search}: {ratio:.2f}x its speed")
        for ours in (f"{q} {search}" for q in ours_of):
            if f"{ours} early" in results:
                print(f"{ours} early vs {ours}: {results[ours][0] / results[f'{ours} early'][0]:.2f}x its speed")
    engines = [e for e in ("float32", "int8") if f"CTranslate2 {e} greedy" in results]
    if engines:  # qkv's speed over CTranslate2's, each search, as a markdown table
        searches = ("greedy", f"beam {args.beam}")
        print("\n| qkv | " + " | ".join(f"{s} vs CT2 {e}" for s in searches for e in engines) + " |")
        print("| --- |" + " --- |" * (len(searches) * len(engines)))
        for (prefix, precision), (early, label) in itertools.product(
            ours_of.items(), (("", ""), (" early", ", early stopping"))
        ):
            if f"{prefix} beam {args.beam}{early}" not in results:
                continue
            cells = [  # "–": greedy has no stopping rule, so no "early" row of its own
                f"{results[f'CTranslate2 {e} {s}'][0] / results[f'{prefix} {s}{early}'][0]:.2f}x"
                if f"{prefix} {s}{early}" in results else "–"
                for s in searches for e in engines
            ]
            print(f"| {precision}{label} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    raise SystemExit(main())
