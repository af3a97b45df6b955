"""Export a qkv Transformer to a Hugging Face ``MarianMTModel`` folder that computes the same function.

Legend: B batch, S source length, T target length, D d_model, F d_ff, V vocabulary size.

Marian is the post-LN, sinusoidal, scaled-embedding Transformer of the paper, so every weight maps one to one,
with one twist: Marian *rebuilds* its position table when the folder is loaded, and lays it out as
``[sin | cos]`` (all sines in dims ``0 … D/2 - 1``, the cosines after), whereas §3.5 (and qkv) interleave them
(``sin`` in even dims, ``cos`` in odd ones). Same frequencies, other order: the two tables differ by a
permutation ``p`` of the D model dimensions. A Transformer is equivariant under a permutation of its residual
stream (LayerNorm takes the mean and variance over all of D; each linear map reading the stream gets its
input columns permuted, each writing it its output rows), so the exported model holds every weight with its D
axis permuted by ``p``: it computes qkv's function exactly, in permuted coordinates that no one ever sees
(logits are over the vocabulary).

The rest is configuration: decoding starts from ``<s>`` (id 1, Marian's default is the pad token), pad is 0,
EOS 2, ``scale_embedding=True`` (×√D, §3.4), tied embeddings, a zero ``final_logits_bias``. The tokenizer is
qkv's own ``tokenizer.json`` behind a :class:`transformers.PreTrainedTokenizerFast` that appends ``</s>`` to
each source, as qkv's batching does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from qkv.data.tokenizer import BOS, EOS, PAD, UNK, SubwordTokenizer
from qkv.interop.export_common import EXPORT_INFO, Exportable, refuse_unless, write_output
from qkv.models.transformer import Transformer

TARGET = "Hugging Face (MarianMTModel)"
MARIAN_EPS = 1e-5  # Marian's LayerNorms use torch's default epsilon; it is not configurable


def check_hf(exportable: Exportable) -> None:
    """Refuse (:class:`ExportError`, one line naming the option) what a Marian model cannot compute."""
    c = exportable.config
    refuse_unless(c.norm == "post", "norm", c.norm, TARGET, "Marian is post-LN only")
    refuse_unless(
        c.positional == "sinusoidal", "positional", c.positional, TARGET,
        "Marian rebuilds a sinusoidal table on load; learned positions would be lost",
    )
    refuse_unless(c.d_model % 2 == 0, "d_model", c.d_model, TARGET, "the sin|cos permutation needs an even d_model")
    refuse_unless(c.eps == MARIAN_EPS, "eps", c.eps, TARGET, f"Marian's LayerNorm epsilon is fixed at {MARIAN_EPS}")
    refuse_unless(
        exportable.tokenizers.shared, "tokenizers", "separate source/target", TARGET,
        "one AutoTokenizer holds one vocabulary; export a joint-vocabulary model",
    )


def marian_permutation(d_model: int) -> Tensor:
    """``p`` with ``qkv_table[:, p] == marian_table``: the even dims (sines) first, then the odd ones (cosines)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])  # (D,)


def marian_config(model: Transformer):
    """The ``MarianConfig`` of ``model`` (dropouts kept, so fine-tuning with HF regularises as qkv did)."""
    from transformers import MarianConfig

    c = model.config
    shared = c.tie_embeddings == "all"
    return MarianConfig(
        vocab_size=c.src_vocab_size,
        decoder_vocab_size=c.tgt_vocab_size,
        d_model=c.d_model,
        encoder_layers=c.n_layers,
        decoder_layers=c.decoder_layers,
        encoder_attention_heads=c.n_heads,
        decoder_attention_heads=c.n_heads,
        encoder_ffn_dim=c.d_ff,
        decoder_ffn_dim=c.d_ff,
        activation_function=c.activation,
        max_position_embeddings=c.max_len,
        scale_embedding=True,
        share_encoder_decoder_embeddings=shared,
        tie_word_embeddings=c.tie_embeddings != "none",
        dropout=c.dropout,
        attention_dropout=c.attention_dropout,
        activation_dropout=c.activation_dropout,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
        forced_eos_token_id=None,
    )


def marian_weights(model: Transformer) -> dict[str, Tensor]:
    """Every Marian parameter name -> its qkv weight, the D axis permuted by :func:`marian_permutation`."""
    c = model.config
    p = marian_permutation(c.d_model)
    ours = model.state_dict()
    out: dict[str, Tensor] = {}

    def reads(name: str) -> Tensor:  # a map reading the stream: permute its input columns, (·, D)
        return ours[name][:, p]

    def writes(name: str) -> Tensor:  # a map writing the stream: permute its output rows, (D, ·) or (D,)
        return ours[name][p]

    def attention(hf: str, qkv: str) -> None:
        for proj in ("q", "k", "v"):
            out[f"{hf}.{proj}_proj.weight"] = reads(f"{qkv}.{proj}_proj.weight")
            out[f"{hf}.{proj}_proj.bias"] = ours[f"{qkv}.{proj}_proj.bias"]
        out[f"{hf}.out_proj.weight"] = writes(f"{qkv}.out_proj.weight")
        out[f"{hf}.out_proj.bias"] = writes(f"{qkv}.out_proj.bias")

    def norm(hf: str, qkv: str) -> None:
        for w in ("weight", "bias"):
            out[f"{hf}.{w}"] = writes(f"{qkv}.norm.{w}")

    def ffn(hf: str, qkv: str) -> None:
        out[f"{hf}.fc1.weight"] = reads(f"{qkv}.ffn.linear1.weight")
        out[f"{hf}.fc1.bias"] = ours[f"{qkv}.ffn.linear1.bias"]
        out[f"{hf}.fc2.weight"] = writes(f"{qkv}.ffn.linear2.weight")
        out[f"{hf}.fc2.bias"] = writes(f"{qkv}.ffn.linear2.bias")

    for i in range(c.n_layers):
        hf, qkv = f"model.encoder.layers.{i}", f"encoder.layers.{i}"
        attention(f"{hf}.self_attn", f"{qkv}.self_attn")
        norm(f"{hf}.self_attn_layer_norm", f"{qkv}.attn_block")
        ffn(hf, qkv)
        norm(f"{hf}.final_layer_norm", f"{qkv}.ffn_block")
    for i in range(c.decoder_layers):
        hf, qkv = f"model.decoder.layers.{i}", f"decoder.layers.{i}"
        attention(f"{hf}.self_attn", f"{qkv}.self_attn")
        norm(f"{hf}.self_attn_layer_norm", f"{qkv}.self_block")
        attention(f"{hf}.encoder_attn", f"{qkv}.cross_attn")
        norm(f"{hf}.encoder_attn_layer_norm", f"{qkv}.cross_block")
        ffn(hf, qkv)
        norm(f"{hf}.final_layer_norm", f"{qkv}.ffn_block")
    if c.tie_embeddings == "all":
        out["model.shared.weight"] = reads("src_embed.embedding.weight")
    else:
        out["model.encoder.embed_tokens.weight"] = reads("src_embed.embedding.weight")
        out["model.decoder.embed_tokens.weight"] = reads("tgt_embed.embedding.weight")
    if c.tie_embeddings == "none":
        out["lm_head.weight"] = reads("generator.weight")
    return out


def to_marian(model: Transformer):
    """A ``MarianMTModel`` (eval mode) computing the same function as ``model``, in memory."""
    from transformers import MarianMTModel

    hf = MarianMTModel(marian_config(model)).eval()
    params = dict(hf.named_parameters())
    weights = marian_weights(model)
    own = {"lm_head.weight", "model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"}
    missing = sorted(set(params) - set(weights) - own)  # Marian builds its position tables itself
    if missing:  # a transformers version with other names: fail here, not with a silently random weight
        raise RuntimeError(f"MarianMTModel parameters not mapped from qkv: {missing[:5]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
        hf.final_logits_bias.zero_()
    return hf


def hf_tokenizer(tokenizer: SubwordTokenizer):
    """qkv's tokenizer as a ``PreTrainedTokenizerFast``: the same ids, plus ``</s>`` after each source.

    ``<unk>`` stays an ordinary token (not registered as ``unk_token``, not "special"), so that
    ``decode(ids, skip_special_tokens=True)`` keeps it visible exactly as qkv's decode does; unknown text still
    encodes to its id 3.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    content = json.loads(tokenizer.hf_tokenizer.to_str())
    for added in content.get("added_tokens", []):
        if added["id"] == UNK:
            added["special"] = False
    inner = Tokenizer.from_str(json.dumps(content))
    inner.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", EOS)]
    )
    names = ("pad_token", "bos_token", "eos_token")
    specials = {name: tokenizer.id_to_token(i) for name, i in zip(names, (PAD, BOS, EOS))}
    return PreTrainedTokenizerFast(
        tokenizer_object=inner, model_input_names=["input_ids", "attention_mask"], padding_side="right", **specials
    )


def generation_config(model: Transformer):
    """Greedy by default, PAD and BOS never produced, at most ``max_len`` tokens (qkv's decoding rules)."""
    from transformers import GenerationConfig

    return GenerationConfig(
        decoder_start_token_id=BOS, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
        forced_eos_token_id=None, suppress_tokens=[PAD, BOS], max_length=model.config.max_len, num_beams=1,
    )


def export_hf(exportable: Exportable, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``out``: ``config.json``, ``model.safetensors``, ``generation_config.json`` and the tokenizer.

    Reload it with ``MarianMTModel.from_pretrained(out)`` and ``AutoTokenizer.from_pretrained(out)``.
    """
    check_hf(exportable)
    hf = to_marian(exportable.model)
    hf.generation_config = generation_config(exportable.model)
    tokenizer = hf_tokenizer(exportable.tokenizers.src)

    def write(tmp: Path) -> None:
        hf.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {"format": "hf", "source": str(exportable.path), "d_model_permutation": "marian sin|cos"}
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    return write_output(out, write, overwrite=overwrite)
