"""Batches by token budget, §5.1: "Each training batch contained a set of sentence pairs containing
approximately 25000 source tokens and 25000 target tokens."

Like fairseq's ``--max-tokens``: sentence pairs are sorted by length, cut into batches whose *padded* size
(sentences × longest sequence, source or target) stays within a token budget, and the order of the batches is
shuffled every epoch with a seeded generator. Sorting keeps padding low; shuffling the batches keeps the
gradient steps varied.

Legend: B batch (sentences), S source length, T target length.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qkv.data.special import BOS, EOS, PAD


@dataclass
class Batch:
    """A padded batch of sentence pairs for teacher forcing.

    For a target sentence ``y`` the decoder reads ``tgt_in = <s> y`` and learns to predict
    ``tgt_out = y </s>`` (the outputs shifted right by one position, §3.1). The source gets ``</s>`` appended.

    Shape:
        - src ``(B, S)``, tgt_in ``(B, T)``, tgt_out ``(B, T)``: int64, right-padded with PAD.
        - n_tokens: number of non-pad target tokens (``tgt_out != PAD``), the loss normalizer.
    """

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    n_tokens: int

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.src.to(device, non_blocking=non_blocking),
            self.tgt_in.to(device, non_blocking=non_blocking),
            self.tgt_out.to(device, non_blocking=non_blocking),
            self.n_tokens,
        )

    def __len__(self) -> int:
        return self.src.shape[0]


def collate_tokens(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> Tensor:
    """Right-pad token id lists into a ``(B, T_max)`` int64 tensor (at least one column)."""
    width = max(1, max((len(s) for s in seqs), default=1))
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    pad_id: int = PAD,
    bos_id: int = BOS,
    eos_id: int = EOS,
) -> Batch:
    """Pad a list of ``(source ids, target ids)`` pairs (without BOS/EOS) into a :class:`Batch`.

    Example:
        >>> b = collate([([5, 6, 7], [8, 9]), ([5], [8, 9, 10])])
        >>> b.src.tolist(), b.tgt_in.tolist(), b.tgt_out.tolist(), b.n_tokens
        ([[5, 6, 7, 2], [5, 2, 0, 0]], [[1, 8, 9, 0], [1, 8, 9, 10]], [[8, 9, 2, 0], [8, 9, 10, 2]], 7)
    """
    if len(pairs) == 0:
        raise ValueError("collate needs at least one sentence pair, got an empty list")
    src = [[*s, eos_id] for s, _ in pairs]
    tgt_in = [[bos_id, *t] for _, t in pairs]
    tgt_out = [[*t, eos_id] for _, t in pairs]
    n_tokens = sum(len(t) for t in tgt_out)
    return Batch(collate_tokens(src, pad_id), collate_tokens(tgt_in, pad_id), collate_tokens(tgt_out, pad_id), n_tokens)


class TokenBudgetSampler:
    """Length-bucketed batches of example indices under a token budget (fairseq ``--max-tokens``).

    Each epoch: shuffle the examples (seed + epoch), stable-sort them by target then source length (so equal
    lengths are in random order), cut the sorted list into batches whose padded size
    ``n_sentences × max(longest source, longest target)`` is at most ``max_tokens``, then shuffle the order of
    the batches. Every example appears exactly once per epoch; the number of batches is the same every epoch.

    **Distributed training.** ``max_tokens`` is the *global* budget: every rank walks through the same global
    batches and takes its share of each, sentences ``rank, rank + world_size, …`` of the length-sorted batch,
    so each rank pads to about ``max_tokens / world_size`` tokens, all ranks do the same number of steps and
    the gradient (averaged by DDP) is that of the whole global batch. A global batch with fewer sentences than
    ranks (a very long sentence under a small budget) is filled up by repeating its sentences, as
    :class:`torch.utils.data.DistributedSampler` does.

    **Resuming.** :meth:`state_dict` records the epoch and how many batches of it were handed out; after
    :meth:`load_state_dict` iteration continues with the next batch. The state counts global batches, so a
    run may resume with a different number of ranks.

    Args:
        src_lengths, tgt_lengths: lengths of each example *as it appears in the batch tensors* (for
            :func:`collate` that is ``len(src) + 1`` and ``len(tgt) + 1``).
        max_tokens: padded tokens per (global) batch.
        shuffle: shuffle examples of equal length and the batch order (``False``: fixed, sorted order).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        rank, world_size: this process's share (DDP).

    Example:
        >>> sampler = TokenBudgetSampler([3, 5, 4, 9], [4, 5, 3, 8], max_tokens=12, shuffle=False)
        >>> list(sampler)
        [[2, 0], [1], [3]]
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        max_tokens: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError(
                f"src_lengths and tgt_lengths differ in size: {len(src_lengths)} vs {len(tgt_lengths)}"
            )
        if len(src_lengths) == 0:
            raise ValueError("TokenBudgetSampler needs at least one example, got none")
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.src_lengths = [int(n) for n in src_lengths]
        self.tgt_lengths = [int(n) for n in tgt_lengths]
        self.cost = [max(s, t) for s, t in zip(self.src_lengths, self.tgt_lengths)]
        for i, c in enumerate(self.cost):
            if c > max_tokens:
                raise ValueError(
                    f"example {i} has {c} tokens (source {self.src_lengths[i]}, target "
                    f"{self.tgt_lengths[i]}), more than max_tokens={max_tokens}: raise max_tokens or filter "
                    "long sentences"
                )
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0  # global batches of this epoch already handed out
        self._cache: tuple[int, list[list[int]]] | None = None
        self._num_batches = len(self.global_batches(0))

    # -- building batches -----------------------------------------------------------------------------------
    def global_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` before sharding (each a list of example indices, shortest first)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        n = len(self.cost)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        order.sort(key=self.src_lengths.__getitem__)  # stable sorts: by target length, then source length
        order.sort(key=self.tgt_lengths.__getitem__)
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order:
            new_longest = max(longest, self.cost[i])
            if current and ((len(current) + 1) * new_longest > self.max_tokens):
                batches.append(current)
                current, new_longest = [], self.cost[i]
            current.append(i)
            longest = new_longest
        batches.append(current)
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[j] for j in perm]
        self._cache = (epoch, batches)
        return batches

    def shard(self, batch: list[int]) -> list[int]:
        """This rank's share of a global batch: every ``world_size``-th sentence from ``rank``."""
        if self.world_size == 1:
            return batch
        if len(batch) < self.world_size:  # too few sentences: repeat them (DistributedSampler does the same)
            batch = [batch[j % len(batch)] for j in range(self.world_size)]
        return batch[self.rank :: self.world_size]

    # -- iteration and state --------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its first batch."""
        self.epoch = epoch
        self.position = 0

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank and in every epoch)."""
        return self._num_batches

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's index lists for the rest of the current epoch (from :attr:`position`)."""
        batches = self.global_batches(self.epoch)
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield self.shard(batch)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_batches": self._num_batches,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_batches"] != self._num_batches or state["seed"] != self.seed:
            raise ValueError(
                f"sampler state is for {state['num_batches']} batches per epoch with seed {state['seed']}, "
                f"this sampler has {self._num_batches} with seed {self.seed}: the data, max_tokens or seed "
                "changed since the checkpoint was written"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])

    def padding_fraction(self, epoch: int = 0) -> float:
        """Share of padding in the source and target tensors of an epoch's batches (a diagnostic)."""
        real = padded = 0
        for batch in self.global_batches(epoch):
            src = [self.src_lengths[i] for i in batch]
            tgt = [self.tgt_lengths[i] for i in batch]
            real += sum(src) + sum(tgt)
            padded += len(batch) * (max(src) + max(tgt))
        return 1.0 - real / padded


def length_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0) -> list[list[int]]:
    """Index batches of similar lengths: shuffle, sort within chunks of 50 batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def check_pairs(name: str, data: Sequence, max_len: int | None) -> None:
    """Refuse an empty data set, items that are not (source ids, target ids), and sentences over ``max_len``."""
    if len(data) == 0:
        raise ValueError(f"{name} is empty")
    for i, pair in enumerate(data):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"{name}[{i}]: expected a (source ids, target ids) pair, got {type(pair).__name__}")
        if max_len is not None:
            for side, ids in zip(("source", "target"), pair):
                if len(ids) + 1 > max_len:
                    raise ValueError(
                        f"{name}[{i}]: {side} has {len(ids)} tokens (+1 for BOS/EOS), more than the model's "
                        f"max_len={max_len}: filter long sentences or raise max_len"
                    )
