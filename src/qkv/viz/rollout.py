"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

Legend: B batch, H heads, N tokens, L layers.

One layer's attention says how much each token reads from each token *of the layer below*; to see what the
final [CLS] reads from the *input* patches, the layers are chained. The residual connection carries half of
each token forward unchanged, so it is added as an identity:

    Â_l = normalise_rows( mean_heads(A_l) + I )                (N, N), rows sum to 1
    R   = Â_L · Â_{L-1} · … · Â_1                               rollout: row i = how token i mixes the inputs

``R[0, 1:]`` (the [CLS] row over the patches) reshaped to the patch grid is the map drawn over the image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def attention_rollout(maps: list[Tensor], *, add_residual: bool = True) -> Tensor:
    """Roll attention out through the layers.

    Args:
        maps: L attention maps ``(B, H, N, N)``, first layer first (as ``forward(return_attention=True)``).
        add_residual: add the identity for the residual connection before renormalising (the paper's choice).

    Returns:
        ``(B, N, N)``: row i is how token i at the top mixes the input tokens; every row sums to 1.

    Example:
        >>> maps = [torch.softmax(torch.randn(1, 2, 3, 3), -1) for _ in range(2)]
        >>> torch.allclose(attention_rollout(maps).sum(-1), torch.ones(1, 3))
        True
    """
    if not maps:
        raise ValueError("attention_rollout needs at least one attention map")
    rollout = None
    for layer, a in enumerate(maps):
        if a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"map of layer {layer} must be (B, H, N, N), got {tuple(a.shape)}")
        a = a.double()
        fused = a.mean(1)  # (B, N, N): the heads averaged (Abnar & Zuidema 2020)
        if add_residual:
            fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        fused = fused / fused.sum(-1, keepdim=True)  # rows sum to 1
        rollout = fused if rollout is None else fused @ rollout  # (B, N, N): this layer after those below
    return rollout.float()


def cls_patch_map(rollout: Tensor, grid: int) -> Tensor:
    """The [CLS] row over the patches, as an image grid: ``(B, N, N) -> (B, grid, grid)``, summing to ≤ 1."""
    if rollout.shape[-1] != grid * grid + 1:
        raise ValueError(f"rollout over {rollout.shape[-1]} tokens does not match [CLS] + {grid}x{grid} patches")
    return rollout[:, 0, 1:].reshape(-1, grid, grid)  # (B, grid, grid)


def save_overlay(image: Tensor, heat: Tensor, path: str | Path, title: str | None = None) -> Path:
    """Save the image with the (upsampled) heat map over it as a PNG: image left, overlay right.

    Args:
        image: ``(S, S)`` or ``(1, S, S)`` grey image, or ``(3, S, S)`` RGB in [0, 1].
        heat: ``(g, g)`` map over the patch grid (e.g. :func:`cls_patch_map`).
        path: the PNG file to write.
    """
    from matplotlib.figure import Figure  # a bare Figure, as in qkv.viz.heatmap: no pyplot, no backend switch

    image = image.detach().float().cpu()
    rgb = image.dim() == 3 and image.shape[0] == 3
    image = image.permute(1, 2, 0).clamp(0, 1) if rgb else image.reshape(image.shape[-2], image.shape[-1])
    heat = heat.detach().float().cpu()
    up = torch.nn.functional.interpolate(heat[None, None], size=image.shape[:2], mode="nearest")[0, 0]  # (S, S)
    fig = Figure(figsize=(6, 3.2))
    axes = fig.subplots(1, 2)
    axes[0].imshow(image.numpy(), cmap=None if rgb else "gray")
    axes[0].set_title("input")
    axes[1].imshow(image.numpy(), cmap=None if rgb else "gray")
    axes[1].imshow(up.numpy(), cmap="inferno", alpha=0.6)
    axes[1].set_title("[CLS] attention rollout")
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
