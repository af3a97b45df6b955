"""`qkv train`: train a translation model on a parallel corpus, then score it on the test set."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from qkv.cli._common import (
    TRAIN_OPTIONS,
    add_set_option,
    add_train_options,
    parse_overrides,
    resolve_device,
    setup_logging,
    train_config_from_args,
)
from qkv.cli._progress import progress_factory, train_progress
from qkv.cli._runlog import RunLog, add_tensorboard_option
from qkv.cli.options import add_device_options, finite_float, positive_int
from qkv.cli.parser import ConfigFile, add_config_option, command_words, model_overrides, recorded_options

log = logging.getLogger("qkv.cli")

#: Eq. 3 (noam) is defined through d_model, which an RNN does not have. For --arch rnn / rnn-attention the noam
#: schedule (the default) therefore resolves to inverse_sqrt with a peak of --lr (default RNN_LR) over --warmup
#: steps, at most RNN_MAX_WARMUP. (The training defaults of the RNN presets; the Transformer keeps Eq. 3.)
RNN_LR, RNN_MAX_WARMUP = 1e-3, 1000

EXAMPLES = """\
examples:
  # a small Transformer on Multi30k German->English, on a CPU (about 30 minutes)
  qkv train --data ../shared/data/multi30k --src de --tgt en --preset small --max-minutes 30 --out runs/de-en
  # the same, in bf16 where the CPU has it (AVX512-BF16 / AMX), else fp32; the log says which
  qkv train --data ../shared/data/multi30k --src de --tgt en --preset small --precision auto --out runs/de-en
  # the base model on a GPU, bf16
  qkv train --data ../shared/data/multi30k --src de --tgt en --preset base --precision bf16 --out runs/de-en-base
  # the RNN baselines with the same data, tokenizer, batching, decoding and scoring
  qkv train --data ../shared/data/multi30k --src de --tgt en --arch rnn-attention --out runs/gru-att
  # continue a run that stopped (same --out)
  qkv train --data ../shared/data/multi30k --src de --tgt en --out runs/de-en --resume --epochs 20
  # more GPUs or CPU processes: torchrun --nproc_per_node=2 -m qkv.cli train ...
  # options from a file (YAML or JSON; flags override it); or repeat a run from its folder
  qkv train --config run.yaml --out runs/from-yaml
  qkv train --config runs/de-en/options.json --out runs/de-en-again
  qkv train --config runs/de-en/best/config.json --data ../shared/data/multi30k --src de --tgt en --out runs/again
"""


def options_from_checkpoint(data) -> dict:
    """A translation checkpoint's ``config.json`` without recorded options: its ``arch`` and ``model`` (as
    ``--set`` overrides, the vocabulary sizes left to the data); the data options come from the command line."""
    derived = ("src_vocab_size", "tgt_vocab_size", "arch")
    return {"arch": data["arch"], **model_overrides(data["model"], derived)}


CONFIG_FILE = ConfigFile(
    "train", sections=(TRAIN_OPTIONS,), train=TRAIN_OPTIONS, from_checkpoint=options_from_checkpoint
)


def schedule_for(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the architecture decides: see :data:`RNN_LR` (nothing for the Transformer)."""
    if args.arch == "transformer" or args.lr_schedule != "noam":
        return {}
    return {"lr_schedule": "inverse_sqrt", "lr": args.lr or RNN_LR, "warmup_steps": min(args.warmup, RNN_MAX_WARMUP)}


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a translation model (Transformer or RNN baseline)",
        description="Train a translation model on a parallel corpus (train/val/test files, one sentence a "
        "line, plain or .gz), evaluate it on the test set with sacreBLEU, and save checkpoints.",
        epilog=EXAMPLES,
    )
    add_config_option(p, CONFIG_FILE)
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, help="folder with {train,val,test_2016_flickr}.{SRC,TGT}[.gz]")
    d.add_argument("--src", required=True, help="source language suffix, e.g. de")
    d.add_argument("--tgt", required=True, help="target language suffix, e.g. en")
    d.add_argument("--vocab-size", type=positive_int, default=8000, help="subword vocabulary size")
    d.add_argument("--tokenizer", choices=["bpe", "unigram", "word"], default="bpe", help="subword model")
    d.add_argument("--separate-vocab", action="store_true", help="one vocabulary per language (default: joint)")
    d.add_argument("--max-words", type=positive_int, default=None, help="longest sentence accepted, in words")
    d.add_argument("--skip-invalid", action="store_true", help="drop (and count) empty/over-long/bad lines")
    m = p.add_argument_group("model")
    m.add_argument("--arch", choices=["transformer", "rnn", "rnn-attention"], default="transformer",
                   help=f"the RNN baselines train with inverse_sqrt to --lr (default {RNN_LR:g}) over at most "
                   f"{RNN_MAX_WARMUP} warm-up steps unless another --lr-schedule is given (Eq. 3 needs d_model)")
    m.add_argument("--preset", default="small", help="tiny | small (CPU) | base | big (GPU)")
    add_set_option(m)
    add_train_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="run folder: checkpoints last/ best/ averaged/, results.json, "
                   "options.json (these options: --config OUT/options.json repeats the run)")
    o.add_argument("--resume", action="store_true", help="continue from OUT/last (changed options: see docs)")
    o.add_argument("--overwrite", action="store_true", help="delete what OUT holds and start afresh")
    o.add_argument("--no-bleu", action="store_true", help="select the best checkpoint by loss, skip val BLEU")
    o.add_argument("--average-last", type=positive_int, default=5,
                   help="average the last k checkpoints (§6.1; 1 = no averaging; needs --keep-checkpoints >= k)")
    o.add_argument("--test-beam", type=positive_int, default=5, help="beam size for the final test evaluation")
    o.add_argument("--test-alpha", type=finite_float, default=0.6,
                   help="length penalty α of the final test evaluation (§6.1's 0.6; tune it on val with qkv evaluate)")
    o.add_argument("--no-test", action="store_true", help="skip the final test evaluation")
    add_device_options(o)
    add_tensorboard_option(o)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qkv.train.run_folder import claim_run_folder

    setup_logging()
    is_main = int(os.environ.get("RANK", "0")) == 0
    with claim_run_folder(args.out, resume=args.resume, overwrite=args.overwrite, is_main=is_main) as lock:
        if lock.took_over:
            log.info("took over the stale lock of %s (it is no longer running)", lock.took_over)
        if lock.cleared:
            log.info("--overwrite: cleared %d entries of %s", lock.cleared, args.out)
        return _run(args, is_main)


def _resumed(args, data, last: Path):
    """The model and training config of a resumed run (see :mod:`qkv.cli._resume`); refuses contradictions."""
    from qkv.cli import _resume
    from qkv.tasks.translation import build_translation_model
    from qkv.train.checkpoint import model_from_config, read_config

    saved = read_config(last)
    explicit = _resume.explicit_options(args, register)
    if explicit is None:  # not called through qkv.cli.main: every option counts as given
        explicit = set(vars(args))
    record_file = Path(args.out) / "options.json"  # the options the run was started with
    record = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else None
    record = {"options": record} if record is not None else None
    config, applied, refused = _resume.resumed_train_config(
        args, explicit, saved.get("train"), lambda: train_config_from_args(args, **schedule_for(args))
    )
    arch_refused = _resume.refused_arch(args, explicit, saved)  # first: a preset is one of its arch's
    candidate, overrides = None, parse_overrides(args.overrides)
    if not arch_refused and "preset" in explicit:
        arch = saved.get("arch", "transformer")
        candidate = build_translation_model(arch, args.preset, data.tokenizers, overrides).config.to_dict()
    elif overrides:
        candidate = {**(saved.get("model") or {}), **overrides}
    data_applied, data_refused = _resume.refused_data(args, explicit, record, data.tokenizers)
    refused += arch_refused + data_refused + _resume.refused_model(saved, candidate)
    if refused:
        raise ValueError(_resume.refusal(refused))
    if applied or data_applied:
        log.info("resume: applying %s", "; ".join(applied + data_applied))
    return model_from_config(saved, where=str(last / "config.json")), config


def _run(args: argparse.Namespace, is_main: bool) -> int:
    from qkv.data.tokenizer import TokenizerPair

    out = Path(args.out)
    device = resolve_device(args.device) if "LOCAL_RANK" not in os.environ else None
    last = out / "last"
    tokenizers = TokenizerPair.load(last) if args.resume and last.is_dir() else None
    if args.resume and tokenizers is None:
        raise ValueError(f"--resume: no checkpoint at {last} (train without --resume first)")
    # OUT/train.log (what is printed and logged), OUT/metrics.jsonl, TensorBoard; appended to on --resume
    with RunLog(out, resume=args.resume, tensorboard=args.tensorboard, enabled=is_main) as runlog:
        return _train(args, device, tokenizers, out, is_main, runlog)


def _train(args, device, tokenizers, out: Path, is_main: bool, runlog: RunLog) -> int:
    """Data, model (new, or the resumed run's), training, averaging and the test: the run itself."""
    from qkv.tasks.translation import (
        build_translation_model,
        check_lengths,
        greedy_bleu,
        prepare_data,
        write_averaged_checkpoint,
    )
    from qkv.train import train
    from qkv.train.rng import seed_everything

    last = out / "last"
    t0 = time.time()
    data = prepare_data(
        args.data, args.src, args.tgt,
        vocab_size=args.vocab_size, tokenizer_model=args.tokenizer, joint=not args.separate_vocab,
        max_words=args.max_words, skip_invalid=args.skip_invalid, tokenizers=tokenizers,
    )
    if args.resume:
        model, config = _resumed(args, data, last)
    else:
        config = train_config_from_args(args, **schedule_for(args))
        seed_everything(config.seed)  # the initial weights follow --seed
        model = build_translation_model(args.arch, args.preset, data.tokenizers, parse_overrides(args.overrides))
    if args.average_last > config.keep_checkpoints:  # else averaged/ would silently hold fewer
        raise ValueError(f"--average-last {args.average_last} needs as many kept checkpoints, but the run keeps "
                         f"{config.keep_checkpoints}: add --keep-checkpoints {args.average_last}")
    check_lengths(data, getattr(model.config, "max_len", None), skip_invalid=args.skip_invalid)
    if is_main:
        log.info(
            "data: %d train / %d val pairs, vocab %d/%d (%s%s), prepared in %.1fs; dropped: %s",
            len(data.train), len(data.valid), data.tokenizers.src.vocab_size, data.tokenizers.tgt.vocab_size,
            data.tokenizers.src.model, ", joint" if data.tokenizers.shared else ", separate", time.time() - t0,
            data.dropped or "nothing",
        )
        log.info("model: %s, %s parameters", type(model).__name__, f"{model.num_parameters():,}")

    bleu_fn = None
    if not args.no_bleu:
        bleu_fn = greedy_bleu([s for s, _ in data.valid], data.text["val"].tgt, data.tokenizers.tgt.decode,
                              progress=progress_factory(args, leave=False))  # fmt: skip
    if is_main and args.max_minutes:
        log.info("%s", budget_notice(args, len(data.text["test"].src)))
    if is_main and not args.resume:
        _write_run_record(out, args)  # once the data and model are known good: a failed start leaves no run
    t_train = time.time()
    result = train(
        model, data.train, data.valid, config,
        out_dir=out, tokenizers=data.tokenizers, bleu_fn=bleu_fn, resume=args.resume, device=device,
        callback=runlog, progress=train_progress(args, args.max_minutes),
    )  # fmt: skip
    if not is_main:
        return 0
    t_average = time.time()
    averaged = write_averaged_checkpoint(out, args.average_last) if args.average_last > 1 else None
    results = {"train": {k: str(v) if isinstance(v, Path) else v for k, v in vars(result).items()}}
    t_test = time.time()
    if not args.no_test:
        results["test"] = evaluate_checkpoints(
            [c for c in (result.best_checkpoint, averaged) if c is not None],
            data.text["test"], args.test_beam, device or "cpu", progress=progress_factory(args), record=runlog,
            step=result.steps, alpha=args.test_alpha,
        )  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    end, stepped = time.time(), runlog.last_step_at or t_average
    print(f"done in {(end - t0) / 60:.1f} min (data and model {(t_train - t0) / 60:.1f}, training "
          f"{(stepped - t_train) / 60:.1f}, last validation {(t_average - stepped) / 60:.1f}, averaging "
          f"{(t_test - t_average) / 60:.1f}, test {(end - t_test) / 60:.1f}); checkpoints in {out}/ (best/, last/"
          f"{', averaged/' if averaged else ''}); results in {out / 'results.json'}")  # fmt: skip
    return 0


def _write_run_record(out: Path, args: argparse.Namespace) -> None:
    """``OUT/options.json``: the command's options; ``--resume`` checks against it and ``qkv train --config
    OUT/options.json`` repeats the run."""
    out.mkdir(parents=True, exist_ok=True)
    options = {"command": command_words(args), **recorded_options(args)}
    (out / "options.json").write_text(json.dumps(options, indent=2, default=str) + "\n")


def budget_notice(args, n_test: int) -> str:
    """What ``--max-minutes`` covers, said before training starts (the test evaluation comes on top)."""
    until = time.strftime("%H:%M", time.localtime(time.time() + args.max_minutes * 60))
    after = ["a last validation"] + ["checkpoint averaging"] * (args.average_last > 1)
    if not args.no_test:
        after.append(f"the test set ({n_test} sentences, beam {args.test_beam}, best/ and averaged/)")
    steps = ", ".join(after[:-1]) + " and " + after[-1] if len(after) > 1 else after[0]
    return (f"--max-minutes {args.max_minutes:g}: training stops at about {until}; then {steps} follow, outside "
            "the budget" + ("" if args.no_test else " (--no-test skips the test)"))  # fmt: skip


def evaluate_checkpoints(
    paths, test, beam: int, device, *, progress=None, record=None, step=0, alpha: float = 0.6
) -> dict[str, dict]:
    """Translate the test set with each checkpoint and score it (printed, passed to ``record`` as ``test``
    events, and returned)."""
    from qkv.scoring import score
    from qkv.tasks.translation import Translator

    out = {}
    for path in paths:
        t0 = time.time()
        translator = Translator.load(path, device=device)
        hyps = translator.translate(test.src, beam_size=beam, alpha=alpha, progress=progress)
        scores = score(hyps, test.tgt)
        name = Path(path).name
        out[name] = {**scores.as_dict(), "beam": beam, "alpha": alpha, "seconds": round(time.time() - t0, 1)}
        print(f"test ({name}, beam {beam}, α {alpha}): {scores.format()}")
        if record is not None:
            record({"event": "test", "step": step, "checkpoint": name, **out[name]})
    return out
