"""A pretrained Marian (OPUS-MT, ``MarianMTModel``) as a :class:`qkv.Transformer`.

Marian is the paper's encoder-decoder, post-LN, with four differences, each a flagged option of qkv's modules:

- ``activation="swish"`` (OPUS-MT; the paper's ReLU otherwise);
- ``positional_layout="half"``: the same sinusoids as §3.5 laid out ``[sin | cos]`` instead of interleaved;
- ``output_bias=True``: Marian's ``final_logits_bias`` on the pre-softmax map;
- the decoder starts from the pad token (``decoder_start_token_id``): qkv's decoder starts from ``<s>`` (id 1),
  so ``<s>``'s embedding row is a copy of the start token's (see :class:`~qkv.interop.hf_tokenizers.VocabMap`;
  the vocabulary is renumbered into qkv's special ids, the model computes exactly what Marian computes).

Embeddings are scaled by √d_model when ``scale_embedding`` (OPUS-MT: yes), else ``scale_embeddings=False``.
Anything else that changes the computation (pre-LN variants, embedding LayerNorms, separate vocabularies,
different encoder/decoder sizes) is refused with the field named, never approximated.

Legend: V the Marian vocabulary, D d_model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qkv.data.tokenizer import TokenizerPair
from qkv.interop.common import HFWeights, expect, fail, hf_config, linear, load_into, read_json
from qkv.interop.hf_tokenizers import MarianSentencePiece, VocabMap
from qkv.models.transformer import Transformer, TransformerConfig
from qkv.nn.feedforward import ACTIVATIONS
from qkv.nn.positional import sinusoidal_table

# fields of old (fairseq/BART-style) configs that transformers' Marian ignores: refused unless they say "as Marian"
_MARIAN_ONLY = {
    "normalize_before": False,
    "add_final_layer_norm": False,
    "normalize_embedding": False,
    "add_bias_logits": False,
    "static_position_embeddings": True,
    "layernorm_embedding": False,
}


def marian_config(folder: Path, raw: dict[str, Any], cfg) -> TransformerConfig:
    """The :class:`TransformerConfig` of a Marian config (``raw``: config.json, ``cfg``: transformers' config)."""
    for field, value in _MARIAN_ONLY.items():
        expect(folder, raw, field, (value,), value)
    for enc, dec in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if getattr(cfg, enc) != getattr(cfg, dec):
            fail(folder, dec, f"qkv needs the same value as {enc} ({getattr(cfg, enc)}), got {getattr(cfg, dec)}")
    expect(folder, cfg, "activation_function", tuple(ACTIVATIONS))
    expect(folder, cfg, "share_encoder_decoder_embeddings", (True,), True)
    expect(folder, cfg, "decoder_vocab_size", (None, cfg.vocab_size), None)
    expect(folder, cfg, "is_encoder_decoder", (True,), True)
    v = cfg.vocab_size + 1  # qkv's <s> is one extra row (a copy of the decoder start token)
    return TransformerConfig(
        src_vocab_size=v,
        tgt_vocab_size=v,
        d_model=cfg.d_model,
        n_heads=cfg.encoder_attention_heads,
        d_ff=cfg.encoder_ffn_dim,
        n_layers=cfg.encoder_layers,
        n_decoder_layers=cfg.decoder_layers,
        dropout=float(cfg.dropout),
        attention_dropout=float(cfg.attention_dropout),
        activation_dropout=float(cfg.activation_dropout),
        activation=cfg.activation_function,
        norm="post",
        positional="sinusoidal",
        positional_layout="half",
        scale_embeddings=bool(cfg.scale_embedding),
        output_bias=True,
        max_len=cfg.max_position_embeddings,
        tie_embeddings="none",  # decided from the weights in load_marian
        pad_id=0,
        eps=1e-5,  # transformers' Marian: nn.LayerNorm's default
    )


def _vocab_map(folder: Path, cfg, vocab: dict[str, int]) -> VocabMap:
    if len(vocab) != cfg.vocab_size or sorted(vocab.values()) != list(range(cfg.vocab_size)):
        fail(folder, "vocab.json", f"{len(vocab)} entries, expected ids 0 … {cfg.vocab_size - 1} (vocab_size)")
    for token, field in (("</s>", "eos_token_id"), ("<pad>", "pad_token_id")):
        if token in vocab and vocab[token] != getattr(cfg, field):
            fail(folder, field, f"{getattr(cfg, field)} in config.json but {token!r} is {vocab[token]} in vocab.json")
    if "<unk>" not in vocab:
        fail(folder, "vocab.json", "no '<unk>' token")
    start = cfg.decoder_start_token_id if cfg.decoder_start_token_id is not None else cfg.pad_token_id
    return VocabMap.build(
        cfg.vocab_size, pad=cfg.pad_token_id, start=start, eos=cfg.eos_token_id, unk=vocab["<unk>"], folder=folder
    )


def _check_positions(weights: HFWeights, config: TransformerConfig) -> None:
    """Marian's stored position table (if any) must be the half-split sinusoids qkv computes."""
    table = sinusoidal_table(config.max_len, config.d_model, "half")
    for side in ("encoder", "decoder"):
        name = f"model.{side}.embed_positions.weight"
        if weights.has(name):
            stored = weights.get(name)
            if stored.shape != table.shape or not torch.allclose(stored, table, atol=1e-4):
                fail(weights.folder, name, "not the [sin | cos] sinusoids of Marian: qkv cannot reproduce it")


def _embeddings(weights: HFWeights, vmap: VocabMap, tie_word_embeddings: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Encoder and decoder embeddings and output matrix, rows in qkv's order, ``(V + 1, D)`` each."""
    enc = weights.get("model.encoder.embed_tokens.weight", "model.shared.weight")
    dec = weights.get("model.decoder.embed_tokens.weight", "model.shared.weight")
    if weights.has("model.shared.weight"):
        weights.get("model.shared.weight")  # the same matrix as the embeddings above
    if weights.has("lm_head.weight") or not tie_word_embeddings:
        out = weights.get("lm_head.weight")
    else:
        out = dec
    return enc[vmap.to_hf], dec[vmap.to_hf], out[vmap.to_hf]


def _layer_state(weights: HFWeights, config: TransformerConfig) -> dict[str, Tensor]:
    state: dict[str, Tensor] = {}
    for i in range(config.n_layers):
        src, dst = f"model.encoder.layers.{i}", f"encoder.layers.{i}"
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(state, weights, f"{dst}.self_attn.{p}", f"{src}.self_attn.{p}")
        linear(state, weights, f"{dst}.attn_block.norm", f"{src}.self_attn_layer_norm")
        linear(state, weights, f"{dst}.ffn.linear1", f"{src}.fc1")
        linear(state, weights, f"{dst}.ffn.linear2", f"{src}.fc2")
        linear(state, weights, f"{dst}.ffn_block.norm", f"{src}.final_layer_norm")
    for i in range(config.decoder_layers):
        src, dst = f"model.decoder.layers.{i}", f"decoder.layers.{i}"
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(state, weights, f"{dst}.self_attn.{p}", f"{src}.self_attn.{p}")
            linear(state, weights, f"{dst}.cross_attn.{p}", f"{src}.encoder_attn.{p}")
        linear(state, weights, f"{dst}.self_block.norm", f"{src}.self_attn_layer_norm")
        linear(state, weights, f"{dst}.cross_block.norm", f"{src}.encoder_attn_layer_norm")
        linear(state, weights, f"{dst}.ffn.linear1", f"{src}.fc1")
        linear(state, weights, f"{dst}.ffn.linear2", f"{src}.fc2")
        linear(state, weights, f"{dst}.ffn_block.norm", f"{src}.final_layer_norm")
    return state


def load_marian(folder: Path, raw: dict[str, Any]) -> tuple[Transformer, TokenizerPair]:
    """Build the qkv Transformer of a ``MarianMTModel`` folder and its tokenizers (qkv ids on both)."""
    cfg = hf_config(folder, raw)
    config = marian_config(folder, raw, cfg)
    tok_config = read_json(folder, "tokenizer_config.json", required=False) or {}
    expect(folder, tok_config, "separate_vocabs", (False,), False)
    vocab = read_json(folder, "vocab.json")
    vmap = _vocab_map(folder, cfg, vocab)

    weights = HFWeights(folder)
    _check_positions(weights, config)
    enc, dec, out = _embeddings(weights, vmap, bool(getattr(cfg, "tie_word_embeddings", True)))
    if enc.equal(dec) and dec.equal(out):
        config = config.replace(tie_embeddings="all")  # one matrix, as OPUS-MT trains them (§3.4)
    elif dec.equal(out):
        config = config.replace(tie_embeddings="decoder")
    state = _layer_state(weights, config)
    state["src_embed.embedding.weight"] = enc
    state["tgt_embed.embedding.weight"] = dec
    state["generator.weight"] = out
    if weights.has("final_logits_bias"):
        state["generator.bias"] = weights.get("final_logits_bias").reshape(-1)[vmap.to_hf]
    else:
        state["generator.bias"] = torch.zeros(vmap.size)
    weights.check_all_used(ignore=("model.encoder.embed_positions", "model.decoder.embed_positions"))
    model = load_into(Transformer(config), state, folder)

    src = MarianSentencePiece.load(folder, "source.spm", "source.spm", vocab, vmap)
    tgt = MarianSentencePiece.load(folder, "target.spm", "source.spm", vocab, vmap)
    return model, TokenizerPair(src, tgt)
