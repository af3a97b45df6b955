"""Masked-language-model pre-training, BERT's objective (Devlin et al. 2019, §3.1 "Task #1: Masked LM").

Legend: B batch, T tokens, N = T (+1 with [CLS]), D d_model, V vocabulary.

15% of the (non-padding) tokens are *chosen*; of those 80% are replaced by [MASK], 10% by a random token and
10% are left unchanged, and the model predicts the original token at every chosen position — and only there
(the loss ignores every other position). The random and unchanged cases keep the model from learning that only
[MASK] positions matter, since [MASK] never appears when it is fine-tuned.

    inputs, targets = mask_tokens(tokens)                   targets = IGNORE where not chosen
    logits = MLMHead(TextClassifier.encode(inputs))         (B, T, V)
    loss = CrossEntropy(logits, targets, ignore_index=IGNORE)

The encoder pre-trained this way is saved as a ``"classifier"`` checkpoint (:mod:`qkv.train.checkpoint`; the
MLM head, :mod:`qkv.models.mlm`, is not kept) and then fine-tuned for classification
(``qkv classify train --init DIR``):
:func:`load_pretrained_encoder` copies every weight except the classifier head.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qkv.config import ConfigMixin, check, is_number
from qkv.data.batching import collate_tokens, length_batches
from qkv.models.classifier import TextClassifier
from qkv.models.mlm import MaskedLanguageModel
from qkv.train.checkpoint import load_checkpoint
from qkv.train.fit import check_fit_config, fit

IGNORE = -100  # target of a position that is not chosen: ignored by the loss (torch's ignore_index default)
N_SPECIAL = 4  # PAD, BOS, EOS, UNK = 0..3 are never chosen nor drawn as random tokens


def mask_tokens(
    tokens: Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    pad_id: int = 0,
    n_special: int = N_SPECIAL,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's corruption: choose ``mask_prob`` of the real tokens; 80% -> [MASK], 10% -> random, 10% kept.

    Args:
        tokens: ``(B, T)`` token ids, padded with ``pad_id``.
        mask_id: the [MASK] id.
        vocab_size: random replacements are drawn uniformly from ``[n_special, vocab_size)``, not ``mask_id``.
        mask_prob: probability that a real token is chosen (0.15).
        pad_id: padding id, never chosen.
        n_special: ids below this (PAD/BOS/EOS/UNK) are never chosen.
        generator: a :class:`torch.Generator` for reproducible masks.

    Returns:
        ``(inputs (B, T), targets (B, T))``: the corrupted input, and the original id at chosen positions,
        :data:`IGNORE` elsewhere.

    Example:
        >>> x = torch.randint(4, 50, (2, 20))
        >>> inputs, targets = mask_tokens(x, mask_id=50, vocab_size=51)
        >>> bool(((targets == IGNORE) | (targets == x)).all())
        True
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (B, T), got {tuple(tokens.shape)}")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    if vocab_size - n_special < 2:
        raise ValueError(f"vocab_size {vocab_size} leaves no ordinary tokens to draw random replacements from")

    def rand(shape):
        return torch.rand(shape, generator=generator, device=tokens.device)

    eligible = (tokens != pad_id) & (tokens >= n_special) & (tokens != mask_id)  # (B, T)
    chosen = eligible & (rand(tokens.shape) < mask_prob)  # 15% of real tokens
    draw = rand(tokens.shape)  # one draw decides what a chosen token becomes
    to_mask = chosen & (draw < 0.8)  # 80%: [MASK]
    to_random = chosen & (draw >= 0.8) & (draw < 0.9)  # 10%: random token; the last 10% stay unchanged
    # random ids from [n_special, vocab_size) without mask_id: draw from one fewer and skip over mask_id
    random_ids = torch.randint(n_special, vocab_size - 1, tokens.shape, generator=generator, device=tokens.device)
    random_ids = random_ids + (random_ids >= mask_id).long() * int(n_special <= mask_id < vocab_size)
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_ids, inputs)
    targets = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE))
    return inputs, targets


def mlm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over the chosen positions only (``targets != IGNORE``): ``(B, T, V), (B, T) -> ()``.

    Unchosen positions contribute neither to the loss nor to its gradient.
    """
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


@dataclass(frozen=True)
class MLMConfig(ConfigMixin):
    """Hyper-parameters of :func:`pretrain_mlm` (BERT: mask_prob 0.15, AdamW, warm-up then linear decay).

    Args:
        epochs: passes over the training sentences.
        batch_size: sentences per step.
        lr: peak learning rate of AdamW.
        weight_decay: decoupled weight decay.
        warmup: fraction of all steps spent warming up linearly (then linear decay to 0).
        mask_prob: fraction of the tokens chosen for prediction (BERT: 0.15; 80 % [MASK], 10 % random, 10 % kept).
        grad_clip: clip the global gradient norm (0 = off).
        seed: seeds batching order, masking and dropout.
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    mask_prob: float = 0.15
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_fit_config(self)
        ok = is_number(self.mask_prob) and 0 < self.mask_prob < 1
        check(ok, f"mask_prob must be in (0, 1), got {self.mask_prob!r}")


def pretrain_mlm(
    classifier: TextClassifier,
    sentences: Sequence[Sequence[int]],
    config: MLMConfig,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    progress: Callable[..., Any] | None = None,
) -> list[dict]:
    """Pre-train ``classifier``'s embeddings and encoder with the MLM objective on token id lists.

    Returns one record per epoch: ``epoch``, ``step`` (optimizer steps so far), ``loss`` (mean over chosen
    tokens), ``accuracy`` (of the predictions at chosen positions). The masks are drawn afresh every epoch
    (dynamic masking, RoBERTa). ``on_epoch``, ``on_step``, ``progress``: see :func:`qkv.train.fit.fit`.
    """
    c = classifier.config
    mlm = MaskedLanguageModel(classifier)
    device = next(classifier.parameters()).device
    mlm.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    lengths = [len(s) for s in sentences]

    def batches(epoch: int):
        for batch in length_batches(lengths, config.batch_size, shuffle=True, seed=config.seed + epoch):
            yield collate_tokens([sentences[i] for i in batch], c.pad_id)  # (B, T)

    def step(model: MaskedLanguageModel, tokens: Tensor):
        inputs, targets = mask_tokens(
            tokens, mask_id=c.mask_id, vocab_size=c.vocab_size, mask_prob=config.mask_prob, pad_id=c.pad_id,
            generator=generator,
        )  # fmt: skip
        chosen_mask = targets != IGNORE  # (B, T)
        chosen = int(chosen_mask.sum())
        if chosen == 0:
            return None, 0, 0
        chosen_mask = chosen_mask.to(device)
        logits = model(inputs.to(device), chosen_mask)  # (M, V): only the chosen positions
        targets = targets.to(device)[chosen_mask]  # (M,)
        loss = F.cross_entropy(logits.float(), targets)  # = mlm_loss on the full (B, T, V) logits
        return loss, int((logits.argmax(-1) == targets).sum()), chosen

    total = math.ceil(len(sentences) / config.batch_size) * config.epochs
    return fit(mlm, batches, step, config, total_steps=total, accuracy_name="accuracy", on_epoch=on_epoch,
               on_step=on_step, progress=progress)  # fmt: skip


def load_pretrained_encoder(classifier: TextClassifier, folder: str | Path) -> list[str]:
    """Copy the weights of a pre-trained checkpoint folder into ``classifier``, all but the classifier head.

    The folder is read with :func:`qkv.train.checkpoint.load_checkpoint` (names and shapes checked against the
    model its ``config.json`` describes). Returns the names of the parameters left at their fresh
    initialisation (the head). Shapes must match: build ``classifier`` from the pre-trained config (same
    vocabulary and sizes).
    """
    pretrained = load_checkpoint(folder, device=next(classifier.parameters()).device).model
    state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("head.")}
    own = classifier.state_dict()
    for name, value in state.items():
        if name in own and own[name].shape != value.shape:
            raise ValueError(
                f"{folder}: weight {name} has shape {tuple(value.shape)}, the model expects {tuple(own[name].shape)}"
            )
    missing, unexpected = classifier.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{folder}: weights the classifier does not have: {unexpected}")
    return list(missing)
