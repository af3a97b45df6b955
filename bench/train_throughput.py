"""Training throughput of qkv against torch.nn.Transformer and Hugging Face MarianMTModel, same shapes.

Every implementation is the same encoder-decoder (the qkv preset's sizes, one shared vocabulary tied to the
output layer, sinusoidal positions, post-LN), trained with the same loss (label-smoothed cross-entropy,
ε = 0.1, §5.4: qkv's own one-pass implementation for qkv, ``F.cross_entropy`` for the others; ``--loss
shared`` gives every implementation ``F.cross_entropy``) and optimizer (Adam, β = (0.9, 0.98), ε = 1e-9,
§5.3) on the same synthetic batches:

- ``qkv``:    :class:`qkv.Transformer`;
- ``torch``:  ``torch.nn.Transformer`` with embeddings, positional encoding and the tied generator around it
  (it adds a final LayerNorm to each stack, which qkv's post-LN model does not have);
- ``marian``: ``transformers.MarianMTModel`` with SDPA attention (skipped if ``transformers`` is absent);
- ``marian-eager``: the same with ``attn_implementation="eager"`` (its written-out attention: in bf16 on a
  CPU faster than PyTorch's fused kernel, so Marian's fastest mode there).

Each in eager mode and under ``torch.compile`` (``--no-compile`` to skip). On CPU every run is built and
warmed up first, then all are timed round-robin, one step of each per round, so that a shared machine's
changing load hits them alike (on CUDA one after the other). Printed for each: step time (median), target
tokens/s, MFU and peak memory (on CPU the process RSS during that run's warm-up, the other models included);
then the ratio of qkv to the best other implementation, and the loss curve of qkv's first steps eager vs
compiled from the same seed (dropout 0, so the two runs see the same computation): the compiled fast path
must train the same.

MFU = model FLOPs per step / step time / the device's dense matmul rate *measured here* (bf16 on GPU, fp32
on CPU, an 8192² / 1024² matmul), not the datasheet peak. Model FLOPs = 3 × forward matmul FLOPs (backward =
2 × forward), counting every projection, the attention matmuls (causal self-attention at half) and the
output layer; the same count for every implementation. Sequences are full length (no padding), so every
target position is a token.

Memory: the process keeps freed blocks and caches more oneDNN kernels (:func:`qkv.train.process.set_up_process`,
as the ``qkv`` command line does), for every implementation alike: their fp32 logits are ≥ 32 MB, which glibc
would otherwise return to the kernel and page-fault in again every step.

Precision: ``--precision auto|fp32|bf16`` (issue 17) picks bf16 autocast where qkv's ``--precision auto`` would
(CUDA with bf16, a CPU with AVX512-BF16 or AMX) and overrides ``--dtype``; every implementation then runs in it.
The optimizer is the same for all: ``--adam fused`` (default: one kernel per parameter, on CPU as on GPU, as
``qkv train`` does), ``foreach`` or ``loop`` (the for-loop, this script's CPU optimizer before issue 17).
``--profile N`` ends with a ``torch.profiler`` table of N qkv eager steps (top ops by self time), ``--breakdown N``
with the median milliseconds of N qkv eager steps cut into forward, loss, backward and optimizer (no
profiler overhead).

Examples:
    python bench/train_throughput.py --device cpu --threads 2 --preset small --batch 48 --src-len 32 \
        --tgt-len 32 --vocab 8000 --precision auto --profile 3      # issue 17's CPU shapes
    nice -n 5 python bench/train_throughput.py                    # CPU: tiny preset, 16 × 32 × 32, fp32
    python bench/train_throughput.py --device cuda                # GPU: base, 256 × 32 × 32, bf16, Adam
    python bench/train_throughput.py --only qkv --no-compile --steps 5
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import qkv
from _common import (
    PeakMemory,
    Timing,
    add_device_options,
    autocast,
    benchmark,
    compare,
    environment,
    format_table,
    human,
    matmul_flops,
    pick_device,
    setup_device,
    sync_debug,
    synchronize,
)
from qkv.decode import BOS, EOS, PAD
from qkv.nn.positional import sinusoidal_table
from qkv.train.loss import label_smoothed_cross_entropy
from qkv.train.precision import PRECISIONS, describe_precision, resolve_precision
from qkv.train.process import set_up_process

IMPLEMENTATIONS = ("qkv", "torch", "marian", "marian-eager")
ADAM = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}


# -- the models -------------------------------------------------------------------------------------------
class TorchNNTransformer(nn.Module):
    """``torch.nn.Transformer`` made into a full translation model like qkv's: embeddings × √D + sinusoids,
    dropout, the encoder-decoder, and a generator tied to the shared embedding (§3.4).

    Shape: src ``(B, S)``, tgt ``(B, T)`` -> logits ``(B, T, V)``.
    """

    def __init__(self, c: qkv.TransformerConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        nn.init.normal_(self.embed.weight, std=c.d_model**-0.5)
        self.scale = math.sqrt(c.d_model)
        self.register_buffer("pe", sinusoidal_table(c.max_len, c.d_model), persistent=False)
        self.dropout = nn.Dropout(c.dropout)
        self.transformer = nn.Transformer(
            d_model=c.d_model, nhead=c.n_heads, num_encoder_layers=c.n_layers,
            num_decoder_layers=c.decoder_layers, dim_feedforward=c.d_ff, dropout=c.dropout,
            activation=c.activation, layer_norm_eps=c.eps, batch_first=True, norm_first=c.norm == "pre",
        )
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        self.generator.weight = self.embed.weight
        self.pad_id = c.pad_id

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        s, t = src.shape[1], tgt.shape[1]
        x = self.dropout(self.embed(src) * self.scale + self.pe[:s])  # (B, S, D)
        y = self.dropout(self.embed(tgt) * self.scale + self.pe[:t])  # (B, T, D)
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=tgt.device, dtype=y.dtype)
        pad = src.eq(self.pad_id)  # (B, S), True = padding: torch's polarity, the opposite of qkv's
        h = self.transformer(
            x, y, tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True
        )  # (B, T, D)
        return self.generator(h)  # (B, T, V)


class MarianModel(nn.Module):
    """``transformers.MarianMTModel`` with the ``(src, tgt) -> logits`` interface; ``attention``: its
    ``attn_implementation``, ``"sdpa"`` (PyTorch's fused kernel) or ``"eager"`` (written out)."""

    def __init__(self, c: qkv.TransformerConfig, attention: str = "sdpa") -> None:
        super().__init__()
        from transformers import MarianConfig, MarianMTModel

        config = MarianConfig(
            vocab_size=c.src_vocab_size, d_model=c.d_model, encoder_layers=c.n_layers,
            decoder_layers=c.decoder_layers, encoder_attention_heads=c.n_heads,
            decoder_attention_heads=c.n_heads, encoder_ffn_dim=c.d_ff, decoder_ffn_dim=c.d_ff,
            activation_function=c.activation, dropout=c.dropout, attention_dropout=c.attention_dropout,
            activation_dropout=c.activation_dropout, max_position_embeddings=c.max_len, scale_embedding=True,
            pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=BOS,
            share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
        )
        self.model = MarianMTModel._from_config(config, attn_implementation=attention)
        self.pad_id = c.pad_id

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        out = self.model(input_ids=src, attention_mask=src.ne(self.pad_id), decoder_input_ids=tgt)
        return out.logits  # (B, T, V)


def marian_available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


BUILDERS: dict[str, Callable[[qkv.TransformerConfig], nn.Module]] = {
    "qkv": qkv.Transformer,
    "torch": TorchNNTransformer,
    "marian": MarianModel,
    "marian-eager": lambda c: MarianModel(c, attention="eager"),
}


class WithLoss(nn.Module):
    """Model + label-smoothed cross-entropy (§5.4), so that ``torch.compile`` sees the whole forward.

    ``own_loss``: qkv's own loss, :func:`qkv.train.label_smoothed_cross_entropy` (one chunked pass for the
    loss and its gradient, what ``qkv train`` runs); otherwise ``F.cross_entropy`` on fp32 logits (PyTorch's
    standard, what the other implementations' users call).
    """

    def __init__(self, model: nn.Module, epsilon: float = 0.1, own_loss: bool = False) -> None:
        super().__init__()
        self.model = model
        self.epsilon = epsilon
        self.own_loss = own_loss

    def forward(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        return self.loss(self.model(src, tgt_in), tgt_out)  # logits (B, T, V)

    def loss(self, logits: Tensor, tgt_out: Tensor) -> Tensor:
        """The mean loss per target token of ``logits`` ``(B, T, V)`` against ``tgt_out`` ``(B, T)``."""
        if self.own_loss:
            n = (tgt_out != PAD).sum()  # known before the loss: its gradient comes already divided by it
            loss_sum, _, _ = label_smoothed_cross_entropy(logits, tgt_out, self.epsilon, PAD, grad_scale=1.0 / n)
            return loss_sum / n
        return F.cross_entropy(
            logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=PAD, label_smoothing=self.epsilon
        )


# -- FLOPs --------------------------------------------------------------------------------------------------
def training_flops(c: qkv.TransformerConfig, b: int, s: int, t: int) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3 × forward) on a ``B × S → B × T`` batch."""
    d, f, v = c.d_model, c.d_ff, c.tgt_vocab_size
    enc_token = 2 * (4 * d * d + 2 * d * f) + 4 * s * d  # Q,K,V,O + FFN; Q·Kᵀ and weights·V over S keys
    dec_token = (
        2 * (4 * d * d) + 2 * t * d  # masked self-attention: projections + attention (causal: half)
        + 2 * (2 * d * d) + 4 * s * d  # cross-attention: Q and O projections + attention over S keys
        + 2 * (2 * d * f)  # FFN
    )
    cross_kv = 2 * (2 * d * d)  # K, V projections of the memory, per source token and decoder layer
    forward = (
        b * s * c.n_layers * enc_token
        + b * t * c.decoder_layers * dec_token
        + b * s * c.decoder_layers * cross_kv
        + b * t * 2 * d * v  # generator
    )
    return 3.0 * forward


# -- data ---------------------------------------------------------------------------------------------------
def make_batches(n: int, b: int, s: int, t: int, vocab: int, device: torch.device, seed: int = 0):
    """``n`` batches of a reversal task (the target is the source reversed), full length, on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        src = torch.randint(4, vocab, (b, s), generator=gen)  # (B, S), ids above the specials
        rev = src.flip(1).repeat(1, math.ceil(t / s))[:, :t]  # (B, T)
        tgt_in = torch.cat([torch.full((b, 1), BOS), rev[:, :-1]], dim=1)  # BOS + y
        batches.append((src.to(device), tgt_in.to(device), rev.to(device)))
    return batches


# -- measuring ----------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    step_s: float
    tokens_per_s: float
    mfu: float
    peak_bytes: int
    memory_kind: str
    warmup_s: float
    host_sync: str
    losses: list[float]


@dataclass
class Trainee:
    """One implementation built, warmed up and ready: ``step()`` runs one training step."""

    name: str
    step: Callable[[], None]
    losses: list[Tensor]
    warmup_s: float
    host_sync: str
    peak_bytes: int
    memory_kind: str
    model: WithLoss
    optimizer: torch.optim.Optimizer


def prepare(name: str, compiled: bool, config: qkv.TransformerConfig, batches, args, device, dtype) -> Trainee:
    """Build ``name`` from seed 0 and run ``args.warmup`` untimed training steps (compilation included)."""
    torch.manual_seed(0)
    own_loss = name == "qkv" and args.loss == "own"
    model = WithLoss(BUILDERS[name](config), own_loss=own_loss).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9, **ADAM[args.adam])
    forward = torch.compile(model, mode=args.compile_mode) if compiled else model
    losses: list[Tensor] = []
    batch_cycle = itertools.cycle(batches)

    def step() -> None:
        src, tgt_in, tgt_out = next(batch_cycle)
        with autocast(device, dtype):
            loss = forward(src, tgt_in, tgt_out)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())  # no .item(): reading the loss would make the host wait for the device

    t0 = time.perf_counter()
    with PeakMemory(device) as mem:
        for _ in range(args.warmup):
            step()
        synchronize(device)
    warmup_s = time.perf_counter() - t0
    host_sync = "n/a (cpu)"
    if device.type == "cuda":
        try:
            with sync_debug(device, "error"):
                step()
            host_sync = "none"
        except RuntimeError as err:
            host_sync = f"yes: {str(err).splitlines()[0][:60]}"
            optimizer.zero_grad(set_to_none=True)
    label = f"{name} {'compiled' if compiled else 'eager'}"
    return Trainee(label, step, losses, warmup_s, host_sync, mem.peak_bytes, mem.kind, model, optimizer)


def result(trainee: Trainee, timing: Timing, config: qkv.TransformerConfig, batches, peak_flops: float) -> Result:
    b, t = batches[0][1].shape
    flops = training_flops(config, b, batches[0][0].shape[1], t)
    return Result(
        name=trainee.name,
        step_s=timing.median,
        tokens_per_s=b * t / timing.median,
        mfu=flops / timing.median / peak_flops,
        peak_bytes=trainee.peak_bytes,
        memory_kind=trainee.memory_kind,
        warmup_s=trainee.warmup_s,
        host_sync=trainee.host_sync,
        losses=torch.stack(trainee.losses).float().cpu().tolist(),
    )


def reset_compiled(device: torch.device) -> None:
    """Drop the graphs (and the parameters they reference) of the previous model."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run(
    name: str, compiled: bool, config: qkv.TransformerConfig, batches, args, device, dtype, peak_flops: float
) -> Result:
    """Build ``name`` from seed 0, run ``args.warmup`` untimed then ``args.steps`` timed training steps."""
    reset_compiled(device)
    trainee = prepare(name, compiled, config, batches, args, device, dtype)
    return result(trainee, benchmark(trainee.step, device, warmup=0, iters=args.steps), config, batches, peak_flops)


def run_all(runs: list[tuple[str, bool]], config, batches, args, device, dtype, peak_flops: float) -> list[Result]:
    """Every ``(name, compiled)`` run. On CUDA one after the other. On CPU all are built and warmed up first,
    then timed round-robin, one step of each per round (:func:`compare`), so that a change of load on a shared
    machine hits every implementation alike: the ratios are measured side by side."""
    if device.type == "cuda":
        results = []
        for name, compiled in runs:
            label = f"{name} {'compiled' if compiled else 'eager'}"
            print(f"  {time.strftime('%H:%M:%S')} running {label} …", file=sys.stderr, flush=True)
            try:
                results.append(run(name, compiled, config, batches, args, device, dtype, peak_flops))
            except Exception as err:  # a baseline failing to compile must not hide the other numbers
                print(f"{label}: failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
        return results
    trainees = []
    for name, compiled in runs:
        label = f"{name} {'compiled' if compiled else 'eager'}"
        print(f"  warming up {label} …", file=sys.stderr, flush=True)
        try:
            trainees.append(prepare(name, compiled, config, batches, args, device, dtype))
        except Exception as err:
            print(f"{label}: failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    print(f"  timing {len(trainees)} runs round-robin, {args.steps} steps each …", file=sys.stderr, flush=True)
    timings = compare({t.name: t.step for t in trainees}, device, warmup=0, iters=args.steps)
    return [result(t, timings[t.name], config, batches, peak_flops) for t in trainees]


def loss_curves(config, batches, args, device, dtype, peak_flops) -> tuple[list[float], list[float]]:
    """qkv's first ``args.curve_steps`` losses, eager and compiled, same seed, same batches, dropout 0."""
    config = config.replace(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    curve_args = argparse.Namespace(**{**vars(args), "warmup": 0, "steps": args.curve_steps})
    eager = run("qkv", False, config, batches, curve_args, device, dtype, peak_flops)
    compiled = run("qkv", True, config, batches, curve_args, device, dtype, peak_flops)
    return eager.losses, compiled.losses


def warmed_qkv(config, batches, args, device, dtype) -> Trainee:
    """qkv eager, built and past one warm-up step: what ``--profile`` and ``--breakdown`` look inside."""
    return prepare("qkv", False, config, batches, argparse.Namespace(**{**vars(args), "warmup": 1}), device, dtype)


def profile_table(config, batches, args, device, dtype, rows: int = 15) -> str:
    """The ``torch.profiler`` table (top ``rows`` ops by self time) of ``args.profile`` qkv eager steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    trainee = warmed_qkv(config, batches, args, device, dtype)
    with profile(activities=activities) as prof:
        for _ in range(args.profile):
            trainee.step()
        synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    title = f"torch.profiler: {args.profile} qkv eager steps, {dtype}, Adam {args.adam}, top {rows} ops by self time"
    return title + "\n" + prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48)


def step_breakdown(config, batches, args, device, dtype) -> str:
    """Where a qkv eager step's time goes: ``args.breakdown`` steps, each cut into forward (the model, to the
    logits), loss (the one-pass loss, which also computes the logits' gradient), backward and optimizer
    (Adam's step and zero_grad), the device synchronized at each cut; median milliseconds of each part."""
    trainee = warmed_qkv(config, batches, args, device, dtype)
    model, optimizer = trainee.model, trainee.optimizer
    parts: dict[str, list[float]] = {"forward": [], "loss": [], "backward": [], "optimizer": []}

    def cut(marks: list[float]) -> None:
        synchronize(device)
        marks.append(time.perf_counter())

    for src, tgt_in, tgt_out in itertools.islice(itertools.cycle(batches), args.breakdown):
        marks = [time.perf_counter()]
        with autocast(device, dtype):
            logits = model.model(src, tgt_in)  # (B, T, V)
        cut(marks)
        loss = model.loss(logits, tgt_out)
        cut(marks)
        loss.backward()
        cut(marks)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        cut(marks)
        for name, t0, t1 in zip(parts, marks, marks[1:]):
            parts[name].append(t1 - t0)
    medians = {name: statistics.median(times) for name, times in parts.items()}
    total = sum(medians.values())
    rows = [{"part": name, "ms": f"{1e3 * m:.1f}", "share": f"{100 * m / total:.0f} %"} for name, m in medians.items()]
    rows.append({"part": "sum", "ms": f"{1e3 * total:.1f}", "share": "100 %"})
    title = f"where a qkv eager step's time goes ({args.breakdown} steps, {dtype}, Adam {args.adam}, median ms):"
    return title + "\n" + format_table(rows, ["part", "ms", "share"])


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The options, before the per-device defaults are filled in."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_device_options(parser, dtype_help="autocast dtype (bf16 CUDA, fp32 CPU)")
    parser.add_argument("--preset", help="qkv preset (default: base on CUDA, tiny on CPU)")
    parser.add_argument("--batch", type=int, help="sentence pairs per step (default: 256 on CUDA, 16 on CPU)")
    parser.add_argument("--src-len", type=int, default=32)
    parser.add_argument("--tgt-len", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=10_000, help="shared vocabulary size")
    parser.add_argument("--dropout", type=float, help="override the preset's dropout")
    parser.add_argument("--steps", type=int, help="timed steps (default: 50 on CUDA, 10 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps, compilation included (default 10 / 3)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure each model under torch.compile (default: on)")
    parser.add_argument("--compile-mode", help="torch.compile mode "
                        "(default: max-autotune-no-cudagraphs on CUDA, the default mode elsewhere)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(IMPLEMENTATIONS)}")
    parser.add_argument("--precision", choices=PRECISIONS, help="auto | fp32 | bf16: overrides --dtype; auto = "
                        "bf16 autocast where the device has fast bf16 (qkv's --precision auto), else fp32")
    parser.add_argument("--adam", choices=sorted(ADAM), default="fused", help="Adam implementation, the same "
                        "for every model (default fused; loop = the for-loop)")
    parser.add_argument("--loss", choices=("own", "shared"), default="own", help="own (default): qkv trains "
                        "with its own loss (qkv.train.label_smoothed_cross_entropy, as qkv train does), the others "
                        "with F.cross_entropy; shared: F.cross_entropy for every implementation")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="finally profile N qkv eager steps with torch.profiler (0: off)")
    parser.add_argument("--breakdown", type=int, default=0, metavar="N",
                        help="finally time N qkv eager steps cut into forward, loss, backward, optimizer (0: off)")
    parser.add_argument("--curve-steps", type=int, help="steps of the eager-vs-compiled loss curve of qkv "
                        "(default: 50 on CUDA, 10 on CPU; 0 to skip)")
    return parser, parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    if args.precision is not None:
        args.dtype = resolve_precision(args.precision, pick_device(args.device))
    device, dtype = setup_device(args)
    set_up_process()  # as `qkv train` does; for every implementation alike (their fp32 logits are ≥ 32 MB)
    gpu = device.type == "cuda"
    args.preset = args.preset or ("base" if gpu else "tiny")
    args.batch = args.batch or (256 if gpu else 16)
    args.steps = args.steps or (50 if gpu else 10)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 3)
    args.curve_steps = args.curve_steps if args.curve_steps is not None else (50 if gpu else 10)
    if args.compile_mode is None and gpu:
        args.compile_mode = "max-autotune-no-cudagraphs"
    names = IMPLEMENTATIONS if args.only is None else tuple(n.strip() for n in args.only.split(","))
    unknown = sorted(set(names) - set(IMPLEMENTATIONS))
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {list(IMPLEMENTATIONS)}")
    if any(n.startswith("marian") for n in names) and not marian_available():
        print("marian: skipped (transformers is not importable)")
        names = tuple(n for n in names if not n.startswith("marian"))
    if args.compile and not torch._dynamo.is_dynamo_supported():
        print("compile: skipped (torch.compile is not supported on this platform)")
        args.compile = False

    overrides = {} if args.dropout is None else {"dropout": args.dropout}
    config = qkv.TransformerConfig.preset(
        args.preset, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab,
        max_len=max(args.src_len, args.tgt_len, 64), **overrides,
    )
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    batches = make_batches(8, args.batch, args.src_len, args.tgt_len, args.vocab, device)
    peak = matmul_flops(device, dtype)
    step_flops = training_flops(config, args.batch, args.src_len, args.tgt_len)

    print(environment())
    print(f"device {device}, {dtype}, preset {args.preset} ({qkv.Transformer(config).num_parameters():,} "
          f"parameters), batch {args.batch} × {args.src_len} src × {args.tgt_len} tgt tokens, vocab "
          f"{args.vocab}, dropout {config.dropout}, Adam ({args.adam}), {args.warmup} warmup + {args.steps} "
          "timed steps")
    if args.precision is not None:
        print(describe_precision(args.precision, device))
    print(f"measured matmul rate: {human(peak, 'FLOP/s')} ({dtype}); model FLOPs/step: {human(step_flops)}")

    runs = [(name, compiled) for name in names for compiled in ((False, True) if args.compile else (False,))]
    results = run_all(runs, config, batches, args, device, dtype, peak)
    print_results(results)
    if args.compile and args.curve_steps > 0 and "qkv" in names:
        print_loss_curves(config, batches, args, device, dtype, peak)
    if args.profile > 0:
        print(profile_table(config, batches, args, device, dtype))
    if args.breakdown > 0:
        print(step_breakdown(config, batches, args, device, dtype))
    print(f"  {time.strftime('%H:%M:%S')} done", file=sys.stderr, flush=True)  # a slow exit shows after this
    return 0


def print_results(results: list[Result]) -> None:
    """The table of every run, then qkv against the best other implementation, eager and compiled."""
    rows = [
        {
            "model": r.name,
            "step ms": f"{r.step_s * 1e3:.1f}",
            "tgt tokens/s": f"{r.tokens_per_s:,.0f}",
            "MFU": f"{r.mfu * 100:.1f}%",
            f"peak mem ({results[0].memory_kind if results else ''})": human(r.peak_bytes, "B"),
            "warmup s": f"{r.warmup_s:.1f}",
            "host sync in step": r.host_sync,
        }
        for r in results
    ]
    if rows:
        print(format_table(rows, list(rows[0])))
    ours = [r for r in results if r.name.startswith("qkv")]
    others = [r for r in results if not r.name.startswith("qkv")]
    if ours and others:
        best_ours = max(ours, key=lambda r: r.tokens_per_s)
        best_other = max(others, key=lambda r: r.tokens_per_s)
        print(f"qkv / best other: {best_ours.tokens_per_s / best_other.tokens_per_s:.2f}× "
              f"({best_ours.name} vs {best_other.name})")
        for mode in ("eager", "compiled"):
            a = [r for r in ours if r.name.endswith(mode)]
            b = [r for r in others if r.name.endswith(mode)]
            if a and b:
                other = max(b, key=lambda r: r.tokens_per_s)
                print(f"  {mode}: qkv / best other = {a[0].tokens_per_s / other.tokens_per_s:.2f}× "
                      f"(vs {other.name})")


def print_loss_curves(config, batches, args, device, dtype, peak) -> None:
    """qkv eager and compiled from the same seed and batches: the losses must agree step by step."""
    print(f"  running qkv loss curves ({args.curve_steps} steps, dropout 0) …", file=sys.stderr)
    eager, compiled = loss_curves(config, batches, args, device, dtype, peak)
    diffs = [abs(a - b) for a, b in zip(eager, compiled)]
    print(f"qkv loss curve, eager vs compiled, same seed and batches, dropout 0 ({len(diffs)} steps):")
    print("  step   eager      compiled   |diff|")
    for i, (a, b, d) in enumerate(zip(eager, compiled, diffs)):
        print(f"  {i:4d}   {a:.6f}   {b:.6f}   {d:.2e}")
    print(f"  max |diff| = {max(diffs):.2e} (loss fell {eager[0]:.3f} -> {eager[-1]:.3f})")


if __name__ == "__main__":
    sys.exit(main())
