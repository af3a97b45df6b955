"""A pretrained BERT (``BertForSequenceClassification`` / ``BertModel``) as qkv's :class:`TextClassifier`.

BERT is the paper's encoder (post-LN, biases everywhere) with a [CLS] classifier; what differs from the paper is a
flagged option of :class:`~qkv.models.classifier.ClassifierConfig`:

- ``activation="gelu"`` (exact, erf), ``positional="learned"``, ``eps=1e-12``;
- ``scale_embeddings=False`` (no √d_model), ``n_segments`` token-type embeddings, ``embed_norm=True``;
- ``pooler=True``: ``tanh(W h_[CLS] + b)`` before the classifier head.

BERT's ``[CLS]`` is a vocabulary token at position 0; qkv's classifier prepends a learned [CLS] vector, which
becomes BERT's ``[CLS]`` embedding row, and the tokenizer appends ``[SEP]``: the model sees ``[CLS] … [SEP]``.
Relative position embeddings, decoders and regression / multi-label heads are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from qkv.interop.common import HFWeights, expect, fail, hf_config, linear, load_into, read_json
from qkv.interop.hf_tokenizers import WordPieceTokenizer
from qkv.models.classifier import ClassifierConfig, TextClassifier
from qkv.nn.feedforward import ACTIVATIONS


def labels_of(cfg) -> list[str]:
    """Class names by id from a transformers config's ``id2label``."""
    id2label = {int(k): str(v) for k, v in (getattr(cfg, "id2label", None) or {}).items()}
    return [id2label.get(i, str(i)) for i in range(cfg.num_labels)]


def bert_config(folder: Path, raw: dict[str, Any], cfg, with_head: bool, pooler: bool) -> ClassifierConfig:
    expect(folder, cfg, "hidden_act", tuple(ACTIVATIONS))
    expect(folder, raw, "position_embedding_type", ("absolute",), "absolute")
    expect(folder, cfg, "is_decoder", (False,), False)
    expect(folder, cfg, "add_cross_attention", (False,), False)
    if with_head:
        expect(folder, cfg, "problem_type", (None, "single_label_classification"), None)
        if cfg.num_labels < 2:
            fail(folder, "num_labels", f"qkv's classifier needs at least 2 classes, got {cfg.num_labels}")
    if cfg.max_position_embeddings < 2:
        fail(folder, "max_position_embeddings", f"need room for [CLS] and a token, got {cfg.max_position_embeddings}")
    return ClassifierConfig(
        vocab_size=cfg.vocab_size,
        n_classes=cfg.num_labels if with_head else 2,
        d_model=cfg.hidden_size,
        n_heads=cfg.num_attention_heads,
        d_ff=cfg.intermediate_size,
        n_layers=cfg.num_hidden_layers,
        dropout=float(cfg.hidden_dropout_prob),
        attention_dropout=float(cfg.attention_probs_dropout_prob),
        activation=cfg.hidden_act,
        norm="post",
        positional="learned",
        pooling="cls",
        max_len=cfg.max_position_embeddings - 1,  # position 0 is [CLS]
        pad_id=cfg.pad_token_id if cfg.pad_token_id is not None else 0,
        eps=float(cfg.layer_norm_eps),
        scale_embeddings=False,
        n_segments=cfg.type_vocab_size,
        embed_norm=True,
        pooler=pooler,
    )


def _encoder_state(weights: HFWeights, p: str, n_layers: int) -> dict[str, Tensor]:
    state: dict[str, Tensor] = {}
    for i in range(n_layers):
        src, dst = f"{p}encoder.layer.{i}", f"encoder.layers.{i}"
        for ours, theirs in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value")):
            linear(state, weights, f"{dst}.self_attn.{ours}", f"{src}.attention.self.{theirs}")
        linear(state, weights, f"{dst}.self_attn.out_proj", f"{src}.attention.output.dense")
        linear(state, weights, f"{dst}.attn_block.norm", f"{src}.attention.output.LayerNorm")
        linear(state, weights, f"{dst}.ffn.linear1", f"{src}.intermediate.dense")
        linear(state, weights, f"{dst}.ffn.linear2", f"{src}.output.dense")
        linear(state, weights, f"{dst}.ffn_block.norm", f"{src}.output.LayerNorm")
    return state


def load_bert(folder: Path, raw: dict[str, Any], with_head: bool):
    """``(TextClassifier, WordPieceTokenizer, labels or None)`` of a BERT folder (``with_head``: a trained head)."""
    cfg = hf_config(folder, raw)
    tok_config = read_json(folder, "tokenizer_config.json", required=False) or {}
    tokenizer = WordPieceTokenizer.load(folder, lowercase=bool(tok_config.get("do_lower_case", True)))
    if tokenizer.vocab_size != cfg.vocab_size:
        fail(folder, "vocab_size", f"config.json says {cfg.vocab_size}, the tokenizer has {tokenizer.vocab_size}")
    cls_id = tokenizer.token_to_id("[CLS]")
    if cls_id is None:
        fail(folder, "tokenizer", "the vocabulary has no '[CLS]' token")

    weights = HFWeights(folder)
    p = "bert." if any(k.startswith("bert.") for k in weights.tensors) else ""
    pooler = weights.has(f"{p}pooler.dense.weight")
    config = bert_config(folder, raw, cfg, with_head, pooler)
    state = _encoder_state(weights, p, config.n_layers)
    words = weights.get(f"{p}embeddings.word_embeddings.weight")
    state["embed.embedding.weight"] = words
    state["cls"] = words[cls_id].reshape(1, 1, -1)  # BERT's [CLS] token embedding is qkv's [CLS] vector
    state["pos.embedding.weight"] = weights.get(f"{p}embeddings.position_embeddings.weight")
    state["segment.weight"] = weights.get(f"{p}embeddings.token_type_embeddings.weight")
    linear(state, weights, "embed_norm", f"{p}embeddings.LayerNorm")
    if pooler:
        linear(state, weights, "pooler", f"{p}pooler.dense")
    model = TextClassifier(config)
    if with_head:
        linear(state, weights, "head", "classifier")
    else:
        state["head.weight"], state["head.bias"] = model.head.weight.detach() * 0, model.head.bias.detach() * 0
    # BertModel checkpoints saved from pre-training carry its heads (cls.*); position_ids is a constant buffer
    ignore = (f"{p}embeddings.position_ids", *(() if with_head else ("cls.",)))
    weights.check_all_used(ignore=ignore)
    return load_into(model, state, folder), tokenizer, labels_of(cfg) if with_head else None
