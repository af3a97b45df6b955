"""Token embeddings scaled by √d_model, §3.4.

"In the embedding layers, we multiply those weights by √d_model." The output projection (pre-softmax linear
map) may share its weight with the embeddings (weight tying, §3.4, after Press & Wolf 2016).
Legend: B batch, T length, D d_model, V vocabulary size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def check_token_ids(name: str, tokens: Tensor) -> None:
    """Refuse anything but a ``(B, length)`` integer tensor of token ids, naming the argument."""
    if not isinstance(tokens, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids (B, length), got {type(tokens).__name__}")
    if tokens.dim() != 2:
        raise ValueError(f"{name} must be token ids of shape (B, length), got {tuple(tokens.shape)}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must hold integer token ids, got {tokens.dtype}")


class TokenEmbedding(nn.Module):
    """Lookup table ``(V, D)`` whose output is multiplied by √d_model (§3.4).

    Weights are drawn from N(0, d_model^-1/2) so that after the √d_model scaling each embedding has unit
    variance, the same scale as the sinusoidal encodings added to it (the fairseq / tensor2tensor choice).

    Args:
        vocab_size, d_model: table size ``(V, D)``.
        padding_idx: the PAD id (its row starts at zero and gets no gradient).
        scale: multiply by √d_model (§3.4; True). ``False`` is a deviation, flagged: BERT and ViT-style
            encoders add their embeddings unscaled (``TextClassifier`` with ``scale_embeddings=False``).

    Shape:
        ``(B, T)`` int64 -> ``(B, T, D)``.
    """

    def __init__(self, vocab_size: int, d_model: int, padding_idx: int | None = None, scale: bool = True) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=d_model**-0.5)
        if padding_idx is not None:
            nn.init.zeros_(self.embedding.weight[padding_idx])
        self.scale = math.sqrt(d_model) if scale else 1.0

    @property
    def weight(self) -> nn.Parameter:
        return self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"token ids must be an integer tensor, got {tokens.dtype}")
        return self.embedding(tokens) * self.scale  # (B, T, D)
