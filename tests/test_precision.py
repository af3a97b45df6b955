"""Mixed precision (issue 17): the choice of ``auto``, bf16 autocast on CPU in training and decoding, fp32 kept
bit for bit, fp32 checkpoints, and the command-line spelling (``--precision``, ``--bf16``)."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from qkv import Transformer, TransformerConfig
from qkv.cli import build_parser
from qkv.config import ConfigError
from qkv.decode import beam_search, greedy_search
from qkv.train import TrainConfig, load_checkpoint, train
from qkv.train import precision as P
from qkv.train.fit import ClassifyTrainConfig, fit

VOCAB = 16


def copy_pairs(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        seq = [rng.randrange(4, VOCAB) for _ in range(rng.randint(2, 7))]
        pairs.append((seq, list(seq)))
    return pairs


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig.preset("tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, max_len=64, **overrides)
    return Transformer(cfg)


def config(**overrides) -> TrainConfig:
    base = dict(max_tokens=96, lr_schedule="inverse_sqrt", lr=3e-3, warmup_steps=20, progress=False, seed=3)
    return TrainConfig(**{**base, **overrides})


def no_fast_bf16(monkeypatch, flags: set[str] = frozenset()) -> None:
    """Make this CPU look like one without (or, with ``flags``, with) native bf16."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(P, "cpu_flags", lambda path="/proc/cpuinfo": set(flags))


# -- the choice -----------------------------------------------------------------------------------------------
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch):
    cpu = torch.device("cpu")
    no_fast_bf16(monkeypatch)
    assert P.resolve_precision("auto", cpu) == "fp32"
    assert "auto -> fp32" in P.describe_precision("auto", cpu)
    assert "AVX512-BF16 not found, AMX not found)" in P.describe_precision("auto", cpu)
    for (name, _, flag), other in zip(P.BF16_CPU_UNITS, ("AMX", "AVX512-BF16")):
        no_fast_bf16(monkeypatch, {"avx2", flag})
        assert P.resolve_precision("auto", cpu) == "bf16"
        assert P.cpu_bf16_units() == [name]
        assert f"{name} found" in P.describe_precision("auto", cpu)  # the log names the unit
        assert f"{other} not found" in P.describe_precision("auto", cpu)
    no_fast_bf16(monkeypatch, {"avx2", *(flag for _, _, flag in P.BF16_CPU_UNITS)})
    assert P.cpu_bf16_units() == ["AVX512-BF16", "AMX"]
    assert "AVX512-BF16 found, AMX found)" in P.describe_precision("auto", cpu)
    no_fast_bf16(monkeypatch, {"avx2"})
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert P.resolve_precision("auto", "cpu") == "bf16"
    assert "auto -> bf16" in P.describe_precision("auto", "cpu")
    # asked for explicitly: taken as asked, whatever the hardware
    no_fast_bf16(monkeypatch)
    assert P.resolve_precision("bf16", cpu) == "bf16" and P.resolve_precision("fp32", cpu) == "fp32"
    assert P.resolve_precision("auto", "meta") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        P.resolve_precision("fp16", cpu)


def test_auto_on_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.resolve_precision("auto", "cuda:0") == "fp32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert {"avx512_bf16", "amx_tile", "avx2"} <= P.cpu_flags(info)
    assert P.cpu_flags(tmp_path / "missing") == set()


def test_autocast_is_bf16_on_cpu_only_when_asked():
    x, w = torch.randn(3, 4), nn.Linear(4, 2)
    with P.autocast("cpu", True):
        assert w(x).dtype == torch.bfloat16
    with P.autocast("cpu", False):
        assert w(x).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


# -- configs and the command line -------------------------------------------------------------------------------
def test_configs_check_precision_and_bf16_is_an_alias():
    assert TrainConfig(max_steps=1).precision == "fp32"  # the library default: the paper's fp32
    assert TrainConfig(max_steps=1, bf16=True).precision == "bf16"
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainConfig(max_steps=1, precision="half")
    with pytest.raises(ConfigError, match="precision must be one of"):
        ClassifyTrainConfig(precision="int8")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "d", "--src", "de", "--tgt", "en", "--out", "o"],
        ["translate", "--model", "m", "x"],
        ["evaluate", "--model", "m"],
        ["serve"],
        ["classify", "train", "--data", "d", "--out", "o"],
        ["vit", "train"],
    ],
)
def test_every_training_and_decoding_command_takes_precision(argv):
    parser = build_parser()
    assert parser.parse_args(argv).precision == "fp32"  # the default: the paper's numbers, as before
    assert parser.parse_args([*argv, "--precision", "auto"]).precision == "auto"
    assert parser.parse_args([*argv, "--bf16"]).precision == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--precision", "fp16"])


# -- training -------------------------------------------------------------------------------------------------
def forward_dtypes(model: Transformer) -> list[torch.dtype]:
    """Record the dtype of the output layer's result on every forward (bf16 under autocast)."""
    seen: list[torch.dtype] = []
    model.generator.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


def step_losses(model: Transformer, precision: str, **kwargs) -> list[float]:
    losses: list[float] = []
    callback = lambda e: losses.append(e["loss"]) if e["event"] == "step" else None  # noqa: E731
    cfg = config(max_steps=25, precision=precision)
    train(model, copy_pairs(200, 1), None, cfg, device="cpu", callback=callback, **kwargs)
    return losses


def test_bf16_training_on_cpu_autocasts_learns_like_fp32_and_saves_fp32(tmp_path):
    model = tiny_model(dropout=0.0)
    seen = forward_dtypes(model)
    losses = step_losses(model, "bf16", out_dir=tmp_path)
    assert set(seen) == {torch.bfloat16}, "bf16 was chosen: the forward must run under CPU autocast"
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, f"bf16 loss did not fall: {losses[:5]} … {losses[-5:]}"
    fp32 = step_losses(tiny_model(dropout=0.0), "fp32")  # same seed, same batches
    gap = max(abs(a - b) / b for a, b in zip(losses, fp32))
    assert gap < 0.05, f"bf16 and fp32 loss curves differ by up to {gap:.1%}"
    assert all(p.dtype == torch.float32 for p in model.parameters()), "master weights stay fp32"
    loaded = load_checkpoint(tmp_path / "last")
    assert all(t.dtype == torch.float32 for t in loaded.model.state_dict().values() if t.is_floating_point())
    assert loaded.config["train"]["precision"] == "bf16"


def trained_weights(monkeypatch, **overrides) -> dict[str, torch.Tensor]:
    no_fast_bf16(monkeypatch)  # so that "auto" is fp32 here
    model = tiny_model()
    seen = forward_dtypes(model)
    train(model, copy_pairs(100, 1), None, config(max_steps=6, **overrides), device="cpu")
    assert set(seen) == {torch.float32}
    return model.state_dict()


def test_fp32_is_bit_for_bit_the_plain_computation(monkeypatch):
    reference = trained_weights(monkeypatch)  # no precision given: the default, as before issue 17
    for overrides in ({"precision": "fp32"}, {"precision": "auto"}):
        weights = trained_weights(monkeypatch, **overrides)
        assert all(torch.equal(reference[k], weights[k]) for k in reference), overrides


def test_fit_autocasts_the_classifier_step():
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    dtypes = []

    def step(m, batch):
        logits = m(batch[0])
        dtypes.append(logits.dtype)
        return nn.functional.cross_entropy(logits.float(), batch[1]), 0, len(batch[1])

    cfg = ClassifyTrainConfig(epochs=1, batch_size=16, precision="bf16")
    fit(model, lambda epoch: [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)], step, cfg, total_steps=4)
    assert dtypes == [torch.bfloat16] * 4
    assert all(p.dtype == torch.float32 for p in model.parameters())


# -- decoding -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def copier() -> Transformer:
    """A tiny model trained (fp32) on the copy task until it mostly copies."""
    model = tiny_model(dropout=0.0)
    train(model, copy_pairs(600, 1), None, config(max_steps=150, warmup_steps=30), device="cpu")
    return model.eval()


def test_bf16_decoding_matches_fp32_mostly_and_scores_are_finite(copier):
    from qkv.data.batching import collate

    src = collate([(s, []) for s, _ in copy_pairs(48, 7)]).src  # (B, S)
    with torch.inference_mode():
        fp32 = greedy_search(copier, src)
        with P.autocast("cpu", True):
            bf16 = greedy_search(copier, src)
            beam = beam_search(copier, src, beam_size=3)
            logits = copier(src, src[:, :4])  # (B, 4, V)
    same = sum(a == b for a, b in zip(fp32, bf16))
    assert same >= 0.8 * len(src), f"bf16 greedy agrees with fp32 on only {same}/{len(src)} sentences"
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    assert len(beam) == len(src) and all(len(y) > 0 for y in beam)
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    assert torch.isfinite(lprobs).all()


def test_translator_decodes_under_the_precision_it_was_given(copier):
    from types import SimpleNamespace

    from qkv.tasks.translation import Translator

    ids = SimpleNamespace(  # a stand-in tokenizer pair: sentences of token ids
        src=SimpleNamespace(encode_batch=lambda lines: [[int(t) for t in line.split()] for line in lines]),
        tgt=SimpleNamespace(decode=lambda y: " ".join(map(str, y))),
    )
    sentences = [" ".join(map(str, s)) for s, _ in copy_pairs(16, 9)]
    fp32 = Translator(copier, ids).translate(sentences, beam_size=1)
    seen = forward_dtypes(copier)
    bf16 = Translator(copier, ids, precision="bf16").translate(sentences, beam_size=1)
    assert set(seen) == {torch.bfloat16}
    assert sum(a == b for a, b in zip(fp32, bf16)) >= 0.8 * len(sentences)



def test_pretrain_has_no_precision_flag_to_ignore():
    # MLM pre-training runs in fp32 only: --bf16 must be refused there, not accepted and ignored
    with pytest.raises(SystemExit):
        build_parser().parse_args(["classify", "pretrain", "--data", "d", "--out", "o", "--bf16"])
