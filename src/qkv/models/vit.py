"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"), built from qkv's encoder.

Legend: B batch, C channels, Hi×Wi image size, P patch size, Np = (Hi/P)·(Wi/P) patches, N = Np + 1 tokens,
D d_model, H heads, K classes.

    x_p = PatchEmbed(image)                (B, Np, D)   a linear map of each flattened P×P patch
    z_0 = [x_cls; x_p] + E_pos             (B, N, D)    learned [CLS] and learned positions (ViT Eq. 1)
    z_L = Encoder(z_0)                     (B, N, D)    the encoder of §3.1, **pre-LN** (ViT Eq. 2-4)
    logits = Head(LayerNorm(z_L[:, 0]))    (B, K)       (the encoder's final LayerNorm; ViT Eq. 4)

Patch embedding: a ``Conv2d`` with ``kernel_size = stride = P``. It is exactly "flatten each P×P patch and
apply one shared Linear map" (``unfold`` + ``Linear``): each output position sees one non-overlapping patch
and the kernel is the Linear weight reshaped to ``(D, C, P, P)``. The convolution does it in one fused call
without materialising the unfolded patches, and is what the reference implementation uses.

Deviation from the Transformer paper, flagged: ViT places LayerNorm *before* each sublayer (pre-LN,
``norm="pre"``, with a final LayerNorm after the stack), uses GELU in the FFN and learned position embeddings.
All three are options of the shared encoder; post-LN is available for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import Tensor, nn

from qkv.config import ConfigError, ConfigMixin, config_preset
from qkv.models.encoder_only import EncoderClassifier, build_encoder, check_encoder_config
from qkv.nn.dropout import Dropout

PRESETS: dict[str, dict[str, Any]] = {
    # 8×8 scikit-learn digits: trains in seconds (tests)
    "digits": dict(image_size=8, patch_size=2, in_channels=1, d_model=64, n_heads=4, d_ff=128, n_layers=2, dropout=0.0),
    # 28×28 MNIST on a CPU in minutes (see bench/vit.py)
    "mnist": dict(image_size=28, patch_size=7, in_channels=1, d_model=64, n_heads=4, d_ff=128, n_layers=4, dropout=0.0),
    # ViT-Base/16 (Dosovitskiy et al. Table 1), for reference
    "vit-base": dict(
        image_size=224,
        patch_size=16,
        in_channels=3,
        d_model=768,
        n_heads=12,
        d_ff=3072,
        n_layers=12,
        dropout=0.1,
        n_classes=1000,
    ),
}


@dataclass(frozen=True)
class ViTConfig(ConfigMixin):
    """Hyper-parameters of :class:`ViT` (frozen, validated).

    Args:
        image_size: side of the (square) input images.
        patch_size: side P of the square patches; must divide ``image_size``.
        in_channels: image channels C (1 for digits).
        n_classes: number of classes K.
        d_model, n_heads, d_ff, n_layers: encoder sizes.
        dropout: residual/embedding dropout; attention_dropout: dropout on attention weights.
        activation_dropout: dropout inside the FFN (not in either paper; 0 by default).
        activation: ``"gelu"`` (ViT) or ``"relu"`` (the Transformer paper).
        norm: ``"pre"`` (ViT; flagged deviation from the paper's post-LN) or ``"post"``.
        eps: LayerNorm epsilon.
    """

    image_size: int = 28
    patch_size: int = 4
    in_channels: int = 1
    n_classes: int = 10
    d_model: int = 96
    n_heads: int = 4
    d_ff: int = 192
    n_layers: int = 4
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "gelu"
    norm: str = "pre"
    eps: float = 1e-6

    def __post_init__(self) -> None:
        positive = ("image_size", "patch_size", "in_channels", "n_classes", "d_model", "n_heads", "d_ff", "n_layers")
        check_encoder_config(self, positive)
        if self.image_size % self.patch_size:
            raise ConfigError(f"patch_size {self.patch_size} must divide image_size {self.image_size}")

    @property
    def grid(self) -> int:
        """Patches per side: ``image_size // patch_size``."""
        return self.image_size // self.patch_size

    @property
    def n_patches(self) -> int:
        return self.grid**2

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """A named preset (``digits``, ``mnist``, ``vit-base``) with overrides."""
        return config_preset(cls, PRESETS, name, overrides, "ViT")


class PatchEmbedding(nn.Module):
    """Split an image into P×P patches and map each linearly to D: ``Conv2d(C, D, kernel=stride=P)``.

    Shape:
        ``(B, C, Hi, Wi) -> (B, Np, D)``, patches in row-major order (row by row, left to right).
    """

    def __init__(self, in_channels: int, d_model: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        x = self.proj(images)  # (B, D, Hi/P, Wi/P)
        return x.flatten(2).transpose(1, 2)  # (B, D, Np) -> (B, Np, D)


class ViT(EncoderClassifier):
    """Vision Transformer classifier: patches + [CLS] + learned positions -> pre-LN encoder -> head on [CLS].

    Args:
        config: a :class:`ViTConfig`.

    Shape:
        - images ``(B, C, Hi, Wi)`` float (or ``(B, Hi, Wi)`` for one channel).
        - ``forward`` -> logits ``(B, K)``; with ``return_attention=True`` also the list of L encoder maps
          ``(B, H, N, N)`` (token 0 is [CLS], token 1 + i is patch i in row-major order).
        - ``encode`` -> final states ``(B, N, D)``, ``None`` (no padding: no mask) and the maps
          (:class:`~qkv.models.encoder_only.EncoderClassifier`).

    Example:
        >>> model = ViT(ViTConfig.preset("digits"))
        >>> model(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.patch_embed = PatchEmbedding(c.in_channels, c.d_model, c.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.pos_embed = nn.Parameter(torch.randn(1, c.n_patches + 1, c.d_model) * 0.02)  # learned E_pos
        self.embed_dropout = Dropout(c.dropout)
        self.encoder = build_encoder(c)  # pre-LN ends in a LayerNorm: the ViT's LN before the head (Eq. 4)
        self.head = nn.Linear(c.d_model, c.n_classes)
        nn.init.zeros_(self.head.weight)  # ViT initialises the head to zero
        nn.init.zeros_(self.head.bias)

    def embed_inputs(self, images: Tensor) -> tuple[Tensor, None]:
        """Patch embeddings ``(B, Np, D)``; no mask (every image has all its patches)."""
        c = self.config
        if images.dim() == 3 and c.in_channels == 1:
            images = images[:, None]  # (B, Hi, Wi) -> (B, 1, Hi, Wi)
        if images.dim() != 4 or tuple(images.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(
                f"images must be (B, {c.in_channels}, {c.image_size}, {c.image_size}), got {tuple(images.shape)}"
            )
        return self.patch_embed(images), None  # (B, Np, D)

    def add_positions(self, x: Tensor) -> Tensor:
        return x + self.pos_embed  # (B, N, D): learned E_pos, [CLS] at position 0

    def classify(self, h: Tensor, mask: None = None) -> Tensor:
        return self.head(h[:, 0])  # (B, K): [CLS]
