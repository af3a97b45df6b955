"""End to end: the Transformer learns the copy and reverse tasks of the Annotated Transformer.

Random sequences of symbols (8-10 of them, from a vocabulary of 10) are fed to the encoder; the decoder must
emit the same sequence (copy) or the sequence backwards (reverse), then EOS. A tiny model trained with Adam
and a warm-up learning-rate schedule reaches >= 99% exact sequence accuracy under greedy decoding in a
few hundred steps (about 25 s on one CPU core). The greedy loop is written out here, with the KV cache, so
that the test depends on the core interface only (``encode``, ``src_mask``, ``new_cache``, ``decode``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qkv import Transformer, TransformerConfig

PAD, BOS, EOS = 0, 1, 2
N_SPECIALS = 4  # PAD, BOS, EOS, UNK: the symbols are ids 4 .. 4 + N_SYMBOLS - 1
N_SYMBOLS = 10
MIN_LEN, MAX_LEN = 8, 10


def make_batch(n: int, task: str, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``n`` random sequences -> ``src`` = x + EOS, ``tgt_in`` = BOS + y, ``tgt_out`` = y + EOS, each
    ``(n, MAX_LEN + 1)`` right-padded with PAD; y = x (copy) or x reversed (reverse)."""
    lengths = torch.randint(MIN_LEN, MAX_LEN + 1, (n,), generator=generator)
    symbols = torch.randint(N_SPECIALS, N_SPECIALS + N_SYMBOLS, (n, MAX_LEN), generator=generator)
    src = torch.full((n, MAX_LEN + 1), PAD)
    tgt_in = torch.full((n, MAX_LEN + 1), PAD)
    tgt_out = torch.full((n, MAX_LEN + 1), PAD)
    for i, length in enumerate(lengths.tolist()):
        x = symbols[i, :length]
        y = x if task == "copy" else x.flip(0)
        src[i, :length], src[i, length] = x, EOS
        tgt_in[i, 0], tgt_in[i, 1 : length + 1] = BOS, y
        tgt_out[i, :length], tgt_out[i, length] = y, EOS
    return src, tgt_in, tgt_out


@torch.inference_mode()
def greedy(model: Transformer, src: torch.Tensor, max_new: int) -> torch.Tensor:
    """Greedy decoding with the KV cache: ``(B, S)`` -> ``(B, max_new)`` token ids (after EOS: anything)."""
    memory, mask = model.encode(src), model.src_mask(src)  # (B, S, D), (B, 1, 1, S)
    cache = model.new_cache()
    token = torch.full((src.shape[0], 1), BOS)  # (B, 1)
    out = []
    for _ in range(max_new):
        logits = model.decode(token, memory, mask, cache=cache)  # (B, 1, V), one new position per step
        token = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out.append(token)
    return torch.cat(out, 1)  # (B, max_new)


def exact_match(predicted: torch.Tensor, tgt_out: torch.Tensor) -> float:
    """Fraction of sequences whose tokens up to and including EOS are all right."""
    n = tgt_out.shape[1]
    relevant = tgt_out != PAD  # the symbols and the EOS
    correct = (predicted[:, :n] == tgt_out) | ~relevant
    return correct.all(dim=1).float().mean().item()


def train_task(
    task: str, steps: int = 350, batch_size: int = 64, peak_lr: float = 3e-3, warmup: int = 50, seed: int = 0
) -> tuple[Transformer, float]:
    """Train a tiny Transformer on ``task`` and return it with its exact-match accuracy on held-out data."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    vocab = N_SPECIALS + N_SYMBOLS
    cfg = TransformerConfig.preset("tiny", src_vocab_size=vocab, tgt_vocab_size=vocab, max_len=32)
    model = Transformer(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=peak_lr, betas=(0.9, 0.98), eps=1e-9)  # §5.3

    def warmup_then_linear_decay(step: int) -> float:
        # Linear warm-up as in Eq. 3, then a linear decay to 0 instead of 1/√step: a short run ends at a
        # small learning rate, so the final model does not sit on one of Adam's late loss spikes.
        return min(max(step, 1) / warmup, (steps - step) / (steps - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_linear_decay)
    model.train()
    for _ in range(steps):
        src, tgt_in, tgt_out = make_batch(batch_size, task, g)
        logits = model(src, tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, vocab), tgt_out.reshape(-1), ignore_index=PAD)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    model.eval()
    src, _, tgt_out = make_batch(500, task, torch.Generator().manual_seed(seed + 1))  # held-out
    accuracy = exact_match(greedy(model, src, MAX_LEN + 1), tgt_out)
    return model, accuracy


def test_make_batch_layout():
    src, tgt_in, tgt_out = make_batch(4, "reverse", torch.Generator().manual_seed(0))
    for s, ti, to in zip(src.tolist(), tgt_in.tolist(), tgt_out.tolist()):
        n = s.index(EOS)
        assert MIN_LEN <= n <= MAX_LEN and all(t >= N_SPECIALS for t in s[:n])
        assert ti[0] == BOS and ti[1 : n + 1] == s[:n][::-1] and to[:n] == s[:n][::-1] and to[n] == EOS


def test_untrained_model_fails_the_task():
    """The accuracy measure can fail: an untrained model gets (almost) nothing right."""
    model = Transformer(TransformerConfig.preset("tiny", src_vocab_size=14, tgt_vocab_size=14, max_len=32))
    src, _, tgt_out = make_batch(100, "copy", torch.Generator().manual_seed(1))
    assert exact_match(greedy(model.eval(), src, MAX_LEN + 1), tgt_out) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("task", ["copy", "reverse"])
def test_learns_task_to_99_percent_exact_match(task):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two, and kinder to a shared machine
    try:
        _, accuracy = train_task(task)
    finally:
        torch.set_num_threads(threads)
    print(f"{task}: exact sequence accuracy {accuracy:.3f} on 500 held-out sequences")
    assert accuracy >= 0.99
