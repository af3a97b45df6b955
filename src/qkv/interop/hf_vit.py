"""A pretrained ViT (``ViTForImageClassification``) as qkv's :class:`~qkv.models.vit.ViT`.

qkv's ViT already is the ViT of Dosovitskiy et al.: patch ``Conv2d``, learned [CLS] and positions, a pre-LN
encoder (flagged deviation from the paper's post-LN) with GELU and a final LayerNorm, a head on [CLS]. The
import only copies the weights (transformers 5.x and 4.x names both) and takes ``layer_norm_eps`` (1e-12).
Non-square images, projections without bias and regression / multi-label heads are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from qkv.interop.common import HFWeights, expect, fail, hf_config, linear, load_into, read_json
from qkv.interop.hf_bert import labels_of
from qkv.models.vit import ViT, ViTConfig
from qkv.nn.feedforward import ACTIVATIONS

# qkv module -> (transformers 5.x name, 4.x name) under vit.layers.{i} / vit.encoder.layer.{i}
_LAYER = {
    "self_attn.q_proj": ("attention.q_proj", "attention.attention.query"),
    "self_attn.k_proj": ("attention.k_proj", "attention.attention.key"),
    "self_attn.v_proj": ("attention.v_proj", "attention.attention.value"),
    "self_attn.out_proj": ("attention.o_proj", "attention.output.dense"),
    "attn_block.norm": ("layernorm_before", "layernorm_before"),
    "ffn_block.norm": ("layernorm_after", "layernorm_after"),
    "ffn.linear1": ("mlp.fc1", "intermediate.dense"),
    "ffn.linear2": ("mlp.fc2", "output.dense"),
}


def _square(folder: Path, field: str, value: Any) -> int:
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] != value[1]:
            fail(folder, field, f"qkv's ViT needs square images and patches, got {value!r}")
        value = value[0]
    return int(value)


def vit_config(folder: Path, cfg) -> ViTConfig:
    expect(folder, cfg, "hidden_act", tuple(ACTIVATIONS))
    expect(folder, cfg, "qkv_bias", (True,), True)
    expect(folder, cfg, "problem_type", (None, "single_label_classification"), None)
    return ViTConfig(
        image_size=_square(folder, "image_size", cfg.image_size),
        patch_size=_square(folder, "patch_size", cfg.patch_size),
        in_channels=cfg.num_channels,
        n_classes=cfg.num_labels,
        d_model=cfg.hidden_size,
        n_heads=cfg.num_attention_heads,
        d_ff=cfg.intermediate_size,
        n_layers=cfg.num_hidden_layers,
        dropout=float(cfg.hidden_dropout_prob),
        attention_dropout=float(cfg.attention_probs_dropout_prob),
        activation=cfg.hidden_act,
        norm="pre",
        eps=float(cfg.layer_norm_eps),
    )


def image_preprocessing(folder: Path) -> dict[str, Any]:
    """``size``, ``mean``, ``std``, ``rescale`` of ``preprocessor_config.json`` (ViTImageProcessor's defaults)."""
    raw = read_json(folder, "preprocessor_config.json", required=False) or {}
    size = raw.get("size", 224)
    if isinstance(size, dict):
        size = size.get("height", size.get("shortest_edge", 224))
    return dict(
        size=int(size),
        mean=list(raw.get("image_mean", [0.5, 0.5, 0.5])) if raw.get("do_normalize", True) else None,
        std=list(raw.get("image_std", [0.5, 0.5, 0.5])) if raw.get("do_normalize", True) else None,
        rescale=float(raw.get("rescale_factor", 1 / 255)) if raw.get("do_rescale", True) else 1.0,
    )


def load_vit(folder: Path, raw: dict[str, Any]):
    """``(ViT, labels, image preprocessing)`` of a ``ViTForImageClassification`` folder."""
    cfg = hf_config(folder, raw)
    config = vit_config(folder, cfg)
    weights = HFWeights(folder)
    state: dict[str, Tensor] = {
        "cls": weights.get("vit.embeddings.cls_token"),
        "pos_embed": weights.get("vit.embeddings.position_embeddings"),
    }
    linear(state, weights, "patch_embed.proj", "vit.embeddings.patch_embeddings.projection")
    for i in range(config.n_layers):
        for ours, (new, old) in _LAYER.items():
            new, old = f"vit.layers.{i}.{new}", f"vit.encoder.layer.{i}.{old}"
            linear(state, weights, f"encoder.layers.{i}.{ours}", new, old)
    linear(state, weights, "encoder.final_norm", "vit.layernorm")
    linear(state, weights, "head", "classifier")
    weights.check_all_used(ignore=("vit.pooler.",))  # ViTForImageClassification does not use a pooler either
    return load_into(ViT(config), state, folder), labels_of(cfg), image_preprocessing(folder)
