"""Time to BLEU against the tool a user would pick (issue 17): qkv vs a Hugging Face Marian, same minutes.

Both train on the same Multi30k data (train; validation BLEU on val; the final score on test_2016_flickr) with
the same BPE vocabulary and the same token ids (learned by qkv's own tokenizer code, as ``qkv train`` does:
the peer reads the tokenizer of qkv's run), the same model sizes (a qkv preset; the Marian mapping of
``bench/train_throughput.py``), the same schedule (inverse-sqrt warm-up, peak and warm-up of the recipe),
label smoothing, Adam betas and sentences per step, for the same minutes of training on the same threads:

- **qkv**: one ``qkv train`` run with the ``cpu-de-en`` recipe of ``bench/translation.py`` and
  ``--max-minutes``, saving (and logging) every ``--qkv-save-every`` steps instead of 150; ``averaged/`` is
  then written from the checkpoints the recipe itself keeps, as ``qkv train`` would. Its validation BLEU is
  measured *after* the run on the checkpoints closest to (not after) every ``--eval-every`` minutes, so
  evaluation takes none of its budget; a checkpoint's training minutes come from the time stamps of
  ``metrics.jsonl`` (the loop's wall time: steps, its own per-epoch validation loss and checkpoint writes;
  data loading before it not counted).
- **HF**: ``MarianMTModel`` from scratch with ``Seq2SeqTrainer`` (fused AdamW, ``group_by_length``, bf16
  autocast and eager attention if a probe finds them faster; ``bench/_peer_marian.py``). Its training time is
  the wall time from ``on_train_begin`` less the time a ``TrainerCallback`` spends decoding validation BLEU on
  its schedule.

Validation BLEU is greedy, the final test BLEU beam 5 (qkv: its own beam search with α = 0.6, of ``last/`` and
of the ``averaged/`` checkpoint; HF: ``generate(num_beams=5)`` with its defaults, of the last weights), both
scored by ``qkv.scoring`` (sacreBLEU). The ratio is "training minutes qkv needs to reach the peer's final
validation BLEU" (linear between evaluations) / "the peer's minutes". Bar: ≤ 0.5.

Usage:
    python bench/peers.py                                  # 30 minutes each, qkv first then HF
    python bench/peers.py --minutes 8 --threads 1 --eval-every 2
    python bench/peers.py --only hf --out runs/peers       # one side; the table uses the other's saved rows
    python bench/peers.py --tiny --steps 6 --data DIR      # a seconds-long smoke run (tests)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from itertools import pairwise
from pathlib import Path

import torch

from qkv.cli import build_parser
from qkv.cli import main as qkv_main
from qkv.cli._common import parse_overrides, train_config_from_args
from qkv.cli.train import schedule_for
from qkv.data.batching import TokenBudgetSampler
from qkv.data.tokenizer import TokenizerPair
from qkv.scoring import score
from qkv.tasks.translation import Translator, build_translation_model, prepare_data, write_averaged_checkpoint
from qkv.train.checkpoint import periodic_checkpoints, read_config
from qkv.train.precision import resolve_precision
from qkv.train.process import set_up_process
from translation import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
SRC, TGT = SETTINGS["cpu-de-en"][:2]
TINY = ["--preset", "tiny", "--vocab-size", "120", "--max-tokens", "256", "--warmup", "4"]


def recipe_argv(args: argparse.Namespace) -> list[str]:
    """The ``qkv train`` arguments both sides follow (the recipe, then --preset / --tiny on top)."""
    recipe = SETTINGS["cpu-de-en"][3]
    argv = ["train", "--data", args.data, "--src", SRC, "--tgt", TGT, "--device", "cpu", "--no-progress",
            *recipe, *(TINY if args.tiny else []), *(["--preset", args.preset] if args.preset else [])]  # fmt: skip
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.qkv_precision:
        argv += ["--precision", args.qkv_precision]
    return argv


def fingerprint(pairs) -> str:
    """A short hash of token-id pairs (equal hashes: both sides were given the identical ids)."""
    return hashlib.sha256(json.dumps([[list(s), list(t)] for s, t in pairs]).encode()).hexdigest()[:16]


def val_bleu(hyps: list[str], refs: list[str]) -> float:
    return round(float(score(hyps, refs).bleu), 2)


# -- qkv ----------------------------------------------------------------------------------------------------
def run_qkv(args: argparse.Namespace, out: Path) -> dict:
    """One ``qkv train`` run of the budget, saving every ``--qkv-save-every`` steps; afterwards the greedy
    validation BLEU of the checkpoints closest to (not after) every ``--eval-every``, at their training minutes,
    the recipe's ``averaged/`` checkpoint, and the test BLEU (beam 5) of ``last/`` and ``averaged/``."""
    run, base = out / "qkv", recipe_argv(args)
    recipe = build_parser().parse_args([*base, "--out", str(run)])
    every = args.eval_every_steps if args.steps else args.eval_every
    save = args.eval_every_steps if args.steps else args.qkv_save_every
    limit = ["--max-steps", str(args.steps)] if args.steps else ["--max-minutes", str(args.minutes)]
    argv = [*base, "--out", str(run), "--overwrite", "--no-test", *limit, "--save-every", str(save),
            "--log-every", str(save), "--keep-checkpoints", "1000000", "--average-last", "1"]  # fmt: skip
    print("qkv " + " ".join(argv), flush=True)
    if qkv_main(argv) != 0:
        raise SystemExit("peers: qkv train failed")
    result = json.loads((run / "results.json").read_text())["train"]
    # stopped by the clock: the last step ended at the budget (within one step); the final validation follows
    end = args.minutes * 60 if result["stopped_by"] == "max_time" else result["elapsed_seconds"]
    clock = step_clock(run / "metrics.jsonl", result["elapsed_seconds"], result["steps"], end)
    t0, val, points = time.monotonic(), translator_text(args, "val"), []
    for step, path in pick_checkpoints(run, clock, every, by_steps=bool(args.steps)):
        bleu = val_bleu(Translator.load(path).translate(val[0], beam_size=1), val[1])
        points.append({"minutes": clock(step) / 60, "step": step, "bleu": bleu, "checkpoint": path.name})
        print(f"qkv: {clock(step) / 60:.2f} training minutes, step {step}, val BLEU {bleu}", flush=True)
    evaluation = time.monotonic() - t0
    data = prepare_data(args.data, SRC, TGT, tokenizers=TokenizerPair.load(run / "last"))
    recipe_average(run, recipe, data, result["steps"])
    test, finals = translator_text(args, "test"), {}
    for name in ("last", "averaged"):
        if (run / name).is_dir():
            finals[name] = val_bleu(Translator.load(run / name).translate(test[0], beam_size=5), test[1])
    return {"name": "qkv", "points": points, "steps": result["steps"], "train_minutes": result["elapsed_seconds"] / 60,
            "test": finals, "eval_minutes": evaluation / 60, "fingerprint": fingerprint(data.train),
            "precision": resolve_precision(recipe.precision, "cpu"), "command": "qkv " + " ".join(argv)}  # fmt: skip


def recipe_average(run: Path, recipe: argparse.Namespace, data, last_step: int) -> None:
    """Keep the periodic checkpoints the recipe's own run would have kept (every ``--save-every`` of the recipe,
    each epoch's end, the last step) and write ``averaged/`` from them as ``qkv train`` does."""
    per_epoch = len(TokenBudgetSampler([len(s) + 1 for s, _ in data.train], [len(t) + 1 for _, t in data.train],
                                       recipe.max_tokens))  # fmt: skip
    every = recipe.save_every or last_step
    for path in periodic_checkpoints(run):
        step = read_config(path)["step"]
        if not (step % every == 0 or step % per_epoch == 0 or step == last_step):
            shutil.rmtree(path)
    if recipe.average_last > 1:
        write_averaged_checkpoint(run, recipe.average_last)


def step_clock(metrics: Path, elapsed: float, last_step: int, end: float):
    """``clock(step)``: seconds of training at ``step``, linear between the ``log`` events of ``metrics.jsonl``
    (written at the saving steps) and ``(last_step, end)``; training began ``elapsed`` seconds before the last
    validation event (the final one; only its checkpoint write follows)."""
    events = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    start = [e for e in events if e["event"] == "valid"][-1]["time"] - elapsed
    known = [(0, 0.0)] + [(e["step"], e["time"] - start) for e in events if e["event"] == "log"]
    known.append((last_step, max(end, known[-1][1])))

    def clock(step: int) -> float:
        for (s0, t0), (s1, t1) in pairwise(known):
            if s0 <= step <= s1:
                return t0 if s1 == s0 else t0 + (t1 - t0) * (step - s0) / (s1 - s0)
        return known[-1][1]

    return clock


def pick_checkpoints(run: Path, clock, every: float, *, by_steps: bool) -> list[tuple[int, Path]]:
    """For each multiple of ``every`` (minutes, or steps), the last periodic checkpoint not after it, then the
    last step's."""
    saved = {read_config(p)["step"]: p for p in periodic_checkpoints(run)}
    at = {s: (s if by_steps else clock(s) / 60) for s in saved}
    picked, target, last = {}, every, max(saved)
    while target < at[last]:
        before = [s for s in saved if at[s] <= target + 1e-9]
        if before:
            picked[max(before)] = saved[max(before)]
        target += every
    picked[last] = saved[last]
    return sorted(picked.items())


def translator_text(args: argparse.Namespace, split: str) -> tuple[list[str], list[str]]:
    from qkv.data.multi30k import read_splits

    text = read_splits(args.data, SRC, TGT)[split]
    return list(text.src), list(text.tgt)


# -- Hugging Face -------------------------------------------------------------------------------------------
def run_hf(args: argparse.Namespace, out: Path) -> dict:
    """The peer, with qkv's tokenizer (from qkv's run when there is one), sizes and recipe."""
    import _peer_marian as peer

    qkv_args = build_parser().parse_args([*recipe_argv(args), "--out", str(out / "qkv")])
    config = train_config_from_args(qkv_args, **schedule_for(qkv_args), max_steps=1)
    qkv_last = out / "qkv" / "last"
    tokenizers = TokenizerPair.load(qkv_last) if qkv_last.is_dir() else None
    data = prepare_data(args.data, SRC, TGT, vocab_size=qkv_args.vocab_size, tokenizer_model=qkv_args.tokenizer,
                        joint=not qkv_args.separate_vocab, tokenizers=tokenizers)  # fmt: skip
    qkv_model = build_translation_model(qkv_args.arch, qkv_args.preset, data.tokenizers,
                                        parse_overrides(qkv_args.overrides))  # fmt: skip
    sampler = TokenBudgetSampler([len(s) + 1 for s, _ in data.train], [len(t) + 1 for _, t in data.train],
                                 config.max_tokens, shuffle=True, seed=config.seed)  # fmt: skip
    batch_size = max(1, round(len(data.train) / len(sampler)))  # qkv's average sentences per step
    torch.manual_seed(config.seed)
    model = peer.marian_from_config(qkv_model.config)
    recipe = peer.PeerRecipe(batch_size=batch_size, lr=config.lr, warmup_steps=config.warmup_steps,
                             label_smoothing=config.label_smoothing, adam_betas=(config.adam_beta1, config.adam_beta2),
                             adam_eps=config.adam_eps, clip_norm=config.clip_norm or 0.0, seed=config.seed)  # fmt: skip
    feats = peer.features(data.train)
    probe = peer.collate_features(feats[:batch_size], model)
    precision, measured = peer.pick_precision(model, probe, args.hf_precision)
    print(f"hf: {batch_size} sentences per step, precision {precision} {measured}", flush=True)
    val_src, val_ref = [s for s, _ in data.valid], list(data.text["val"].tgt)

    def evaluate(m) -> float:
        hyps = peer.translate_ids(m, val_src, beam=1)
        return val_bleu([data.tokenizers.tgt.decode(h) for h in hyps], val_ref)

    total, every = (args.steps, args.eval_every_steps) if args.steps else (args.minutes * 60, args.eval_every * 60)
    schedule = peer.TimedValidation(total=total, every=every, evaluate=evaluate, by_steps=bool(args.steps))
    numbers = peer.train_marian(model, data.train, recipe, schedule, out / "hf",
                                precision=precision, max_steps=args.steps)  # fmt: skip
    for p in schedule.points:
        print(f"hf: {p['minutes']:.2f} training minutes, step {p['step']}, val BLEU {p['bleu']}", flush=True)
    test_src = [data.tokenizers.src.encode(s) for s in data.text["test"].src]
    hyps = peer.translate_ids(model, test_src, beam=5)
    test = val_bleu([data.tokenizers.tgt.decode(h) for h in hyps], list(data.text["test"].tgt))
    sent = [(f["input_ids"][:-1], f["labels"][:-1]) for f in feats]
    return {"name": "HF Marian", "points": schedule.points, "steps": numbers["steps"],
            "train_minutes": schedule.points[-1]["minutes"] if schedule.points else 0.0,
            "test": {"last": test}, "eval_minutes": schedule.eval_seconds / 60, "fingerprint": fingerprint(sent),
            "precision": precision, "batch_size": batch_size, "probe": measured,
            "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip


# -- the table ----------------------------------------------------------------------------------------------
def minutes_to_reach(points: list[dict], bleu: float) -> float | None:
    """Training minutes at which the curve ``points`` first reaches ``bleu`` (linear between evaluations, from
    (0, 0)); ``None`` when it never does."""
    before = {"minutes": 0.0, "bleu": 0.0}
    for p in points:
        if p["bleu"] >= bleu:
            span = p["bleu"] - before["bleu"]
            share = 1.0 if span <= 0 else (bleu - before["bleu"]) / span
            return before["minutes"] + share * (p["minutes"] - before["minutes"])
        before = p
    return None


def table(qkv: dict | None, hf: dict | None) -> str:
    """The one table: minutes vs validation BLEU for both, final test BLEU, the time-to-BLEU ratio."""
    rows = ["| eval | qkv minutes | qkv step | qkv val BLEU | HF minutes | HF step | HF val BLEU |",
            "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    n = max(len(qkv["points"]) if qkv else 0, len(hf["points"]) if hf else 0)
    for i in range(n):
        cells = [str(i + 1)]
        for side in (qkv, hf):
            p = side["points"][i] if side and i < len(side["points"]) else None
            cells += [f"{p['minutes']:.2f}", str(p["step"]), f"{p['bleu']:.2f}"] if p else ["", "", ""]
        rows.append("| " + " | ".join(cells) + " |")
    test = {s["name"]: s["test"] for s in (qkv, hf) if s}
    lines = [*rows, "", "final test_2016_flickr sacreBLEU (beam 5): " + "; ".join(
        f"{name} " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()) for name, t in test.items())]  # fmt: skip
    lines.append("; ".join(f"{s['name']}: {s['steps']} steps in {s['train_minutes']:.2f} training minutes, "
                           f"{s['precision']}, evaluation {s['eval_minutes']:.1f} min (not counted)"
                           for s in (qkv, hf) if s))  # fmt: skip
    if qkv and hf:
        same = qkv["fingerprint"] == hf["fingerprint"]
        lines.append(f"token ids identical: {'yes' if same else 'NO'} ({qkv['fingerprint']} / {hf['fingerprint']})")
        if hf["points"]:
            target, peer_minutes = hf["points"][-1]["bleu"], hf["points"][-1]["minutes"]
            reach = minutes_to_reach(qkv["points"], target)
            if reach is None:
                lines.append(f"qkv does not reach the peer's final val BLEU {target:.2f} in its "
                             f"{qkv['train_minutes']:.2f} minutes: ratio > 1, bar (<= 0.5) FAIL")  # fmt: skip
            else:
                ratio = reach / peer_minutes
                lines.append(f"qkv reaches the peer's final val BLEU {target:.2f} after {reach:.2f} training minutes; "
                             f"the peer took {peer_minutes:.2f}: ratio {ratio:.2f}, bar (<= 0.5) "
                             f"{'PASS' if ratio <= 0.5 else 'FAIL'}")  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30, help="training minutes for each side (default 30)")
    p.add_argument("--eval-every", type=float, default=5, help="validation BLEU every N training minutes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for both")
    p.add_argument("--preset", default=None, help="qkv model preset (default: the recipe's, small)")
    data = Path(os.environ.get("QKV_DATA", ROOT.parent / "shared" / "data")) / "multi30k"
    p.add_argument("--data", default=str(data),
                   help="the Multi30k folder (default: $QKV_DATA/multi30k, else ../shared/data/multi30k)")
    p.add_argument("--out", default="runs/peers", help="OUT/qkv (qkv's run), OUT/hf, OUT/{qkv,hf}.json")
    p.add_argument("--only", choices=["qkv", "hf"], help="run one side (the table reads the other's saved json)")
    p.add_argument("--hf-precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="the peer's precision (auto: a short probe picks the faster, bf16 only on native-bf16 CPUs)")
    p.add_argument("--qkv-precision", choices=["auto", "fp32", "bf16"], default=None,
                   help="qkv train --precision (default: the recipe's, auto = bf16 on native-bf16 CPUs)")
    p.add_argument("--qkv-save-every", type=int, default=50,
                   help="qkv saves (and logs) every N steps: its validation points are these checkpoints")
    p.add_argument("--tiny", action="store_true", help="tiny model and vocabulary (tests)")
    p.add_argument("--steps", type=int, default=None, help="a step budget instead of --minutes (tests)")
    p.add_argument("--eval-every-steps", type=int, default=None, help="with --steps: validate every N steps")
    args = p.parse_args(argv)
    if args.steps and not args.eval_every_steps:
        args.eval_every_steps = args.steps
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_up_process()  # what `qkv train` does, for both sides (the HF side may run alone: --only hf)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for side, run in (("qkv", run_qkv), ("hf", run_hf)):
        path = out / f"{side}.json"
        if args.only in (None, side):
            results[side] = run(args, out)
            path.write_text(json.dumps(results[side], indent=2) + "\n")
        elif path.is_file():
            results[side] = json.loads(path.read_text())
    print(f"\n{table(results.get('qkv'), results.get('hf'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
