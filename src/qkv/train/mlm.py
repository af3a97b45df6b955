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
MLM head is not kept) and then fine-tuned for classification (``qkv classify train --init DIR``):
:func:`load_pretrained_encoder` copies every weight except the classifier head.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.config import ConfigError, ConfigMixin
from qkv.models.classifier import TextClassifier
from qkv.train.checkpoint import load_checkpoint
from qkv.train.classify import collate_tokens, length_batches, make_optimizer, optimizer_step

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


class MLMHead(nn.Module):
    """BERT's MLM output layer: Linear + GELU + LayerNorm, then a projection to the vocabulary.

    The projection shares its weight with the token embedding (weight tying, §3.4) and has its own bias.

    Shape:
        ``(B, T, D) -> (B, T, V)``.
    """

    def __init__(self, embedding_weight: nn.Parameter, eps: float = 1e-5) -> None:
        super().__init__()
        vocab_size, d_model = embedding_weight.shape
        self.transform = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.weight = embedding_weight  # tied (§3.4): not a new parameter
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        h = self.norm(F.gelu(self.transform(h)))  # (B, T, D)
        return F.linear(h, self.weight, self.bias)  # (B, T, V)


class MaskedLanguageModel(nn.Module):
    """A :class:`TextClassifier`'s encoder with an :class:`MLMHead`: predicts the tokens at every position.

    The classifier's config must have a ``mask_id``. The head reads the states of the word positions (the
    [CLS] position, if any, is dropped).

    Shape:
        inputs ``(B, T)`` -> logits ``(B, T, V)``.
    """

    def __init__(self, classifier: TextClassifier) -> None:
        super().__init__()
        if classifier.config.mask_id is None:
            raise ConfigError("MLM pre-training needs a ClassifierConfig with mask_id set (an id for [MASK])")
        self.classifier = classifier
        self.head = MLMHead(classifier.embed.weight, classifier.config.eps)

    def forward(self, inputs: Tensor, chosen: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, V)`` at every position, or ``(M, V)`` at the M positions where ``chosen`` is True.

        Projecting only the chosen positions (15%) to the vocabulary saves most of the cost of the head.
        """
        h, _, _ = self.classifier.encode(inputs)  # (B, N, D)
        if self.classifier.cls is not None:
            h = h[:, 1:]  # (B, T, D): drop [CLS]
        if chosen is not None:
            h = h[chosen]  # (M, D)
        return self.head(h)  # (B, T, V) or (M, V)


def mlm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over the chosen positions only (``targets != IGNORE``): ``(B, T, V), (B, T) -> ()``.

    Unchosen positions contribute neither to the loss nor to its gradient.
    """
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


@dataclass(frozen=True)
class MLMConfig(ConfigMixin):
    """Hyper-parameters of :func:`pretrain_mlm` (BERT: mask_prob 0.15, AdamW, warm-up then linear decay)."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    mask_prob: float = 0.15
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.mask_prob < 1 or self.lr <= 0:
            raise ConfigError(f"bad MLMConfig: {self}")


def pretrain_mlm(
    classifier: TextClassifier,
    sentences: Sequence[Sequence[int]],
    config: MLMConfig,
    *,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Pre-train ``classifier``'s embeddings and encoder with the MLM objective on token id lists.

    Returns one record per epoch: ``epoch``, ``step`` (optimizer steps so far), ``loss`` (mean over chosen
    tokens), ``accuracy`` (of the predictions at chosen positions). The masks are drawn afresh every epoch
    (dynamic masking, RoBERTa).
    """
    c = classifier.config
    mlm = MaskedLanguageModel(classifier)
    device = next(classifier.parameters()).device
    mlm.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    lengths = [len(s) for s in sentences]
    total = math.ceil(len(sentences) / config.batch_size) * config.epochs
    optimizer, scheduler = make_optimizer(mlm, config.lr, config.weight_decay, total, config.warmup)
    history, step = [], 0
    for epoch in range(1, config.epochs + 1):
        mlm.train()
        loss_sum, correct, n = 0.0, 0, 0
        for batch in length_batches(lengths, config.batch_size, shuffle=True, seed=config.seed + epoch):
            tokens = collate_tokens([sentences[i] for i in batch], c.pad_id)  # (B, T)
            inputs, targets = mask_tokens(
                tokens,
                mask_id=c.mask_id,
                vocab_size=c.vocab_size,
                mask_prob=config.mask_prob,
                pad_id=c.pad_id,
                generator=generator,
            )
            chosen_mask = targets != IGNORE  # (B, T)
            chosen = int(chosen_mask.sum())
            if chosen == 0:
                continue
            chosen_mask = chosen_mask.to(device)
            logits = mlm(inputs.to(device), chosen_mask)  # (M, V): only the chosen positions
            targets = targets.to(device)[chosen_mask]  # (M,)
            loss = F.cross_entropy(logits.float(), targets)  # = mlm_loss on the full (B, T, V) logits
            optimizer_step(loss, mlm, optimizer, scheduler, config.grad_clip)
            step += 1
            loss_sum += loss.item() * chosen
            correct += int((logits.argmax(-1) == targets).sum())
            n += chosen
        record = {"epoch": epoch, "step": step, "loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1)}
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


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
