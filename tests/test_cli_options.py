"""The command line's parsing layer, through ``qkv.cli.main``: checked values, --help, --config, pipes, extras."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qkv import __version__
from qkv.cli import build_parser, main
from qkv.cli._common import TRAIN_OPTIONS, train_config_from_args
from qkv.cli.train import schedule_for
from qkv.data.synthetic import write_demo_corpus
from qkv.train.checkpoint import read_config
from qkv.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--data", "d", "--src", "de", "--tgt", "en", "--out", "o"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def leaf_parsers(parser: argparse.ArgumentParser, path=()):
    """``(command words, parser)`` of every command and action, groups included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from leaf_parsers(sub, (*path, name))


# -- --help and --version -------------------------------------------------------------------------------
def test_every_help_shows_examples_and_the_defaults(capsys):
    seen = 0
    for path, parser in leaf_parsers(build_parser()):
        text = parser.format_help()
        assert "examples:" in text, f"qkv {' '.join(path)} --help has no examples"
        has_defaults = any(a.option_strings and a.default not in (None, False, argparse.SUPPRESS)
                           and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
                           for a in parser._actions)  # fmt: skip
        if has_defaults:
            assert "(default:" in text, f"qkv {' '.join(path)} --help shows no defaults"
            seen += 1
    assert seen >= 12  # every command that takes options
    assert main(["translate", "--help"]) == 0
    assert "(default: 5)" in capsys.readouterr().out  # --beam


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"qkv {__version__}"


# -- values checked where they are parsed: one line, exit 2 -----------------------------------------------
@pytest.mark.parametrize(
    "argv, named",
    [
        (["translate", "--model", "m", "--batch-size", "-1", "x"], "--batch-size"),
        (["translate", "--model", "m", "--beam", "0", "x"], "--beam"),
        (["translate", "--model", "m", "--beam", "-3", "x"], "--beam"),
        (["translate", "--model", "m", "--alpha", "nan", "x"], "--alpha"),
        (["translate", "--model", "m", "--device", "tpu", "x"], "--device"),
        (["evaluate", "--model", "m", "--beam", "0"], "--beam"),
        (["attention", "x", "--beam", "0"], "--beam"),
        (["attention", "x", "--beam-size", "0"], "--beam-size"),
        ([*TRAIN, "--average-last", "-2"], "--average-last"),
        ([*TRAIN, "--test-beam", "0"], "--test-beam"),
        ([*TRAIN, "--test-alpha", "nan"], "--test-alpha"),
        ([*TRAIN, "--max-tokens", "0"], "--max-tokens"),
        ([*TRAIN, "--lr", "inf"], "--lr"),
        ([*TRAIN, "--label-smoothing", "1.5"], "--label-smoothing"),
        (["demo", "--beam", "0"], "--beam"),
        (["classify", "train", "--data", "d", "--out", "o", "--device", "tpu"], "--device"),
        (["classify", "predict", "--model", "m", "--threads", "0"], "--threads"),
        (["vit", "train", "--epochs", "0"], "--epochs"),
    ],
)
def test_bad_numbers_and_devices_are_one_line_errors(argv, named, capsys):
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert named in err and err.startswith("qkv "), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(capsys):
    assert main(["translate", "--model", "m", "--device", "cuda", "x"]) == 2
    assert "CUDA is not available" in one_line_error(capsys)


def test_beam_is_the_one_name_and_old_spellings_still_work():
    parser = build_parser()
    assert parser.parse_args(["attention", "x", "--beam-size", "2"]).beam == 2
    assert parser.parse_args(["attention", "x", "--beam", "3"]).beam == 3
    assert "--beam-size" not in parser.parse_args(["attention", "x"]).__dict__
    for command in (["translate", "--model", "m"], ["evaluate"], ["demo"], ["attention", "x"]):
        assert parser.parse_args([*command, "--beam", "4"]).beam == 4


def test_the_search_options_of_every_decoding_command():
    """translate, evaluate, attention and serve all take the length penalty and the stopping rule; serve has
    no --beam (each request picks its beam size)."""
    parser = build_parser()
    for command in (["translate", "--model", "m"], ["evaluate"], ["attention", "x"], ["serve"]):
        args = parser.parse_args([*command, "--alpha", "1.4", "--early-stopping"])
        assert (args.alpha, args.early_stopping) == (1.4, True), command
        defaults = parser.parse_args(command)
        assert (defaults.alpha, defaults.early_stopping) == (0.6, False), command
    assert "beam" not in parser.parse_args(["serve"]).__dict__


def test_threads_are_applied(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["explain", "--hash-table", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# -- flags derived from the dataclasses; nothing rewritten after parsing ----------------------------------
def test_train_flags_are_the_train_config_fields_with_its_defaults():
    args = build_parser().parse_args(TRAIN)
    assert train_config_from_args(args) == TrainConfig(max_epochs=10)  # no default typed twice
    flags = {f.name for f in TRAIN_OPTIONS.fields()}
    assert flags == set(TrainConfig.__dataclass_fields__) - {"bf16"}  # --bf16 is an alias of --precision bf16
    assert train_config_from_args(build_parser().parse_args([*TRAIN, "--bf16"])).precision == "bf16"
    args = build_parser().parse_args([*TRAIN, "--epochs", "2", "--warmup", "7", "--no-progress", "--adam-beta2", "0.9"])
    config = train_config_from_args(args)
    assert (config.max_epochs, config.warmup_steps, config.progress, config.adam_beta2) == (2, 7, False, 0.9)


@pytest.mark.parametrize(
    "extra, expected",
    [
        ([], ("inverse_sqrt", 1e-3, 1000)),
        (["--warmup", "500"], ("inverse_sqrt", 1e-3, 500)),
        (["--lr", "5e-4"], ("inverse_sqrt", 5e-4, 1000)),
        (["--lr-schedule", "constant", "--lr", "2e-3"], ("constant", 2e-3, 4000)),
    ],
)
def test_the_rnn_schedule_is_resolved_when_the_config_is_built(extra, expected):
    args = build_parser().parse_args([*TRAIN, "--arch", "rnn", *extra])
    snapshot = dict(vars(args))
    config = train_config_from_args(args, **schedule_for(args))
    assert (config.lr_schedule, config.lr, config.warmup_steps) == expected
    assert vars(args) == snapshot  # args are not rewritten
    transformer = build_parser().parse_args(TRAIN)
    assert train_config_from_args(transformer, **schedule_for(transformer)).lr_schedule == "noam"


# -- --config ---------------------------------------------------------------------------------------------
def tiny_run(tmp_path: Path, name: str, *extra: str) -> list[str]:
    data = tmp_path / "data"
    if not data.is_dir():
        write_demo_corpus(data, n_train=120, n_val=12, n_test=12, seed=3)
    return ["train", "--data", str(data), "--src", "words", "--tgt", "iso", "--out", str(tmp_path / name),
            "--preset", "tiny", "--tokenizer", "word", "--separate-vocab", "--max-tokens", "256", "--no-progress",
            "--no-bleu", "--no-test", "--device", "cpu", "--average-last", "1", *extra]  # fmt: skip


def test_config_yaml_with_flags_overriding_it(tmp_path, capsys):
    pytest.importorskip("yaml")
    data = tmp_path / "data"
    write_demo_corpus(data, n_train=120, n_val=12, n_test=12, seed=3)
    (tmp_path / "run.yaml").write_text(
        f"data: {data}\nsrc: words\ntgt: iso\npreset: tiny\ntokenizer: word\nseparate-vocab: true\n"
        "max_tokens: 256\nlr_schedule: inverse_sqrt\nlr: 0.002\nwarmup_steps: 5\nlabel_smoothing: 0.2\n"
        "max_steps: 9\nprogress: false\nno_bleu: true\nno_test: true\ndevice: cpu\naverage_last: 1\n"
        "set:\n  d_ff: 48\n"
    )  # fmt: skip
    # the flag wins over the file, before or after --config
    argv = ["train", "--max-steps", "2", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    saved = read_config(tmp_path / "run" / "last")
    assert saved["step"] == 2 and saved["model"]["d_ff"] == 48
    assert saved["train"]["label_smoothing"] == 0.2 and saved["train"]["warmup_steps"] == 5
    assert saved["train"]["progress"] is False


def test_a_run_repeats_from_its_own_folder(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(tiny_run(tmp_path, "first", "--max-steps", "2", "--set", "d_ff=40", "--lr-schedule",
                         "inverse_sqrt", "--lr", "3e-3", "--warmup", "3", "--seed", "5")) == 0  # fmt: skip
    # the run folder's options.json: the whole command again, into another folder
    again = tmp_path / "again"
    assert main(["train", "--config", str(first / "options.json"), "--out", str(again)]) == 0
    assert json.loads((first / "options.json").read_text())["command"] == "train"
    a, b = read_config(first / "last"), read_config(again / "last")
    assert a["model"] == b["model"] and a["train"] == b["train"]
    # a checkpoint's config.json: model and training options (the data options come from the command line)
    parser = build_parser()
    args = parser.parse_args(["train", "--config", str(first / "best" / "config.json"), *TRAIN[1:]])
    assert train_config_from_args(args).to_dict() == a["train"]
    assert args.arch == "transformer" and "d_ff=40" in args.overrides


def test_config_refuses_unknown_keys_and_bad_values_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": "d", "epochz": 3}))
    assert main(["train", "--config", str(bad), "--src", "de", "--tgt", "en", "--out", "o"]) == 2
    err = one_line_error(capsys)
    assert "epochz" in err and "known:" in err and "max_tokens" in err and "epochs" in err
    bad.write_text(json.dumps({"test_beam": 0}))
    assert main(["train", "--config", str(bad), *TRAIN[1:]]) == 2
    assert "test_beam" in one_line_error(capsys)
    bad.write_text(json.dumps({"no_test": "yes"}))
    assert main(["train", "--config", str(bad), *TRAIN[1:]]) == 2
    assert "true or false" in one_line_error(capsys)
    bad.write_text(json.dumps({"command": "vit train", "epochs": 1}))  # recorded by another command
    assert main(["train", "--config", str(bad), *TRAIN[1:]]) == 2
    assert "`qkv vit train`, not `qkv train`" in one_line_error(capsys)
    bad.write_text("[1, 2]")
    assert main(["train", "--config", str(bad), *TRAIN[1:]]) == 2
    assert "mapping" in one_line_error(capsys)
    assert main(["train", "--config", str(tmp_path / "missing.yaml"), *TRAIN[1:]]) == 2
    assert "no such file" in one_line_error(capsys)
    (tmp_path / "partial.json").write_text(json.dumps({"src": "de", "tgt": "en", "out": "o"}))
    assert main(["train", "--config", str(tmp_path / "partial.json")]) == 2
    assert "--data" in one_line_error(capsys)  # still required, from the file or the command line


def test_classify_train_repeats_from_its_config_json(tmp_path, capsys):
    rows = ["label\tsentence"] + [f"{i % 2}\t{'a great film' if i % 2 else 'an awful mess'} {i}" for i in range(30)]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev.tsv").write_text("label\tsentence\n1\tgreat film\n0\tawful mess\n")
    out = tmp_path / "model"
    argv = ["classify", "train", "--data", str(tmp_path), "--out", str(out), "--preset", "tiny", "--epochs", "1",
            "--vocab-size", "80", "--batch-size", "8", "--set", "d_ff=40", "--warmup", "0.1", "--device", "cpu"]
    assert main(argv) == 0
    saved = read_config(out)
    assert saved["train"]["warmup"] == 0.1 and saved["train"]["word_dropout"] == 0.2
    again = tmp_path / "again"
    assert main(["classify", "train", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    repeated = read_config(again)
    assert repeated["model"] == saved["model"] and repeated["train"] == saved["train"]


def test_vit_train_config_json_is_a_valid_config(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from qkv.cli.vit import TRAIN_OPTIONS as VIT_OPTIONS

    out = tmp_path / "vit"
    assert main(["vit", "train", "--out", str(out), "--epochs", "1", "--preset", "digits", "--lr", "2e-3"]) == 0
    saved = read_config(out)
    args = build_parser().parse_args(["vit", "train", "--config", str(out / "config.json"), "--out", "x"])
    assert args.preset == "digits" and args.epochs == 1 and args.lr == 2e-3 and args.data is None
    assert VIT_OPTIONS.build(args, batch_size=saved["train"]["batch_size"]).to_dict() == saved["train"]


# -- pipes and missing packages ---------------------------------------------------------------------------
class ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_stops_quietly(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["explain", "--hash-table"]) == 141
    assert capsys.readouterr().err == ""


def test_explain_into_head_prints_no_traceback():
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        f"{sys.executable} -m qkv.cli explain --hash-table | head -1", shell=True, cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.count("\n") == 1 and done.stderr == "", done.stderr


def test_a_missing_optional_package_is_one_line_saying_what_to_install(monkeypatch, capsys, tmp_path):
    def needs_onnx(args):
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")

    monkeypatch.setattr("qkv.cli.positions.run", needs_onnx)
    assert main(["positions"]) == 2
    assert one_line_error(capsys) == "qkv positions: error: needs the optional package onnx: pip install 'qkv[export]'"
    for name in ("sklearn", "sklearn.datasets"):  # scikit-learn not installed: the 8x8 digits
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["vit", "train", "--out", str(tmp_path / "v"), "--epochs", "1"]) == 2
    assert "pip install scikit-learn" in one_line_error(capsys)
    monkeypatch.setitem(sys.modules, "yaml", None)
    (tmp_path / "run.yaml").write_text("epochs: 1\n")
    assert main(["train", "--config", str(tmp_path / "run.yaml"), *TRAIN[1:]]) == 2
    assert "pip install pyyaml" in one_line_error(capsys)
