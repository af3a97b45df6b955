"""Position-wise feed-forward network, Eq. 2 (§3.3).

    FFN(x) = max(0, x W_1 + b_1) W_2 + b_2

Applied to each position separately and identically. Legend: B batch, T length, D d_model, F d_ff.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from qkv.nn.dropout import Dropout

# "relu" is the paper's. The others are deviations, flagged as options: "gelu" (exact, erf) is BERT's and ViT's
# (Hendrycks & Gimpel 2016); "swish" (= "silu", x·sigmoid(x), Ramachandran et al. 2017) is Marian's (OPUS-MT).
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu, "silu": F.silu}


class PositionwiseFeedForward(nn.Module):
    """Eq. 2: two linear maps with a ReLU between (GELU or swish as flagged options: BERT/ViT, Marian).

    Args:
        d_model: input and output dimension D.
        d_ff: inner dimension F (2048 in the base model).
        activation: ``"relu"`` (the paper), or the deviations ``"gelu"`` (BERT, ViT) and ``"swish"``/``"silu"``
            (Marian / OPUS-MT); see :data:`ACTIVATIONS`.
        dropout: dropout on the inner activation (not in the paper; 0.0 by default).

    Shape:
        ``(B, T, D) -> (B, T, D)``.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)  # W_1, b_1
        self.linear2 = nn.Linear(d_ff, d_model)  # W_2, b_2
        self.activation = ACTIVATIONS[activation]
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(self.activation(self.linear1(x)))  # (B, T, F)
        return self.linear2(h)  # (B, T, D)
