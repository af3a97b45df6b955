"""Export a qkv Transformer to CTranslate2 through its Python spec API, and decode with it.

Legend: B batch, S source length, D d_model, V vocabulary size, L layers.

CTranslate2's own Marian converter assumes a Marian vocabulary (pad last) and a decoder that starts from a
zero embedding; neither is qkv's model, so the ``TransformerSpec`` is filled here from qkv's weights directly:

- encoder and decoder embeddings ×√D (§3.4), the position table given explicitly (qkv's interleaved sin/cos of
  §3.5, or the learned one): CTranslate2 never builds its own;
- self-attention Q, K, V fused into one projection, cross-attention Q apart and K, V fused (CTranslate2's layout);
- post-LN (the paper) or pre-LN with its final norms, ReLU or (erf) GELU, qkv's LayerNorm epsilon;
- the decoder starts from ``<s>`` (id 1) embedded like any token: ``start_from_zero_embedding = False``;
- the vocabularies are qkv's tokenizers' token strings in id order (joint or separate).

CTranslate2 takes and returns token *strings*; :func:`translate_ids` maps qkv's ids to them and back, appends
``</s>`` to each source (as qkv's batching does) and never lets ``<pad>`` or ``<s>`` be produced (as qkv's
search).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from qkv.data.tokenizer import BOS, EOS, PAD, UNK
from qkv.interop.export_common import EXPORT_INFO, Exportable, ExportError, vocabulary, write_output
from qkv.models.transformer import Transformer

QUANTIZATIONS = ("float32", "int16", "int8")


def _fill_attention(spec, attention, self_attention: bool) -> None:
    q, k, v, o = attention.q_proj, attention.k_proj, attention.v_proj, attention.out_proj
    if self_attention:
        spec.linear[0].weight = torch.cat([q.weight, k.weight, v.weight])  # (3D, D)
        spec.linear[0].bias = torch.cat([q.bias, k.bias, v.bias])
    else:
        spec.linear[0].weight, spec.linear[0].bias = q.weight, q.bias
        spec.linear[1].weight = torch.cat([k.weight, v.weight])  # (2D, D)
        spec.linear[1].bias = torch.cat([k.bias, v.bias])
    spec.linear[-1].weight, spec.linear[-1].bias = o.weight, o.bias


def _fill_norm(spec, norm) -> None:
    spec.gamma, spec.beta = norm.weight, norm.bias


def _fill_ffn(spec, layer) -> None:
    spec.linear_0.weight, spec.linear_0.bias = layer.ffn.linear1.weight, layer.ffn.linear1.bias
    spec.linear_1.weight, spec.linear_1.bias = layer.ffn.linear2.weight, layer.ffn.linear2.bias
    _fill_norm(spec.layer_norm, layer.ffn_block.norm)


def _fill_stack(spec, embedding: Tensor, positions: Tensor, stack) -> None:
    spec.scale_embeddings = True  # ×√D (§3.4)
    spec.position_encodings.encodings = positions  # (max_len, D), never rebuilt by CTranslate2
    emb = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    emb.weight = embedding
    if stack.final_norm is not None:  # pre-LN
        _fill_norm(spec.layer_norm, stack.final_norm)


def transformer_spec(model: Transformer):
    """A ``ctranslate2.specs.TransformerSpec`` holding ``model``'s weights (vocabularies not yet registered)."""
    from ctranslate2.specs import common_spec, transformer_spec

    c = model.config
    activation = {
        "relu": common_spec.Activation.RELU,
        "gelu": common_spec.Activation.GELU,
        "swish": common_spec.Activation.SWISH,
        "silu": common_spec.Activation.SWISH,
    }[c.activation]
    spec = transformer_spec.TransformerSpec.from_config(
        (c.n_layers, c.decoder_layers), c.n_heads, pre_norm=c.norm == "pre", activation=activation
    )
    with torch.no_grad():
        src_pos = model.src_pos.encodings(c.max_len).detach().clone()  # (max_len, D)
        tgt_pos = model.tgt_pos.encodings(c.max_len).detach().clone()
        _fill_stack(spec.encoder, model.src_embed.weight.detach(), src_pos, model.encoder)
        for layer_spec, layer in zip(spec.encoder.layer, model.encoder.layers):
            _fill_attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
            _fill_norm(layer_spec.self_attention.layer_norm, layer.attn_block.norm)
            _fill_ffn(layer_spec.ffn, layer)
        _fill_stack(spec.decoder, model.tgt_embed.weight.detach(), tgt_pos, model.decoder)
        for layer_spec, layer in zip(spec.decoder.layer, model.decoder.layers):
            _fill_attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
            _fill_norm(layer_spec.self_attention.layer_norm, layer.self_block.norm)
            _fill_attention(layer_spec.attention, layer.cross_attn, self_attention=False)
            _fill_norm(layer_spec.attention.layer_norm, layer.cross_block.norm)
            _fill_ffn(layer_spec.ffn, layer)
        spec.decoder.projection.weight = model.generator.weight.detach()  # (V, D), tied or not
    spec.decoder.start_from_zero_embedding = False  # qkv starts from the embedding of <s>
    return spec


def _converter(exportable: Exportable):
    from ctranslate2.converters import Converter

    class QkvConverter(Converter):
        def _load(self):
            spec = transformer_spec(exportable.model)
            spec.register_source_vocabulary(vocabulary(exportable.tokenizers.src))
            spec.register_target_vocabulary(vocabulary(exportable.tokenizers.tgt))
            tgt = exportable.tokenizers.tgt
            spec.config.bos_token, spec.config.eos_token = tgt.id_to_token(BOS), tgt.id_to_token(EOS)
            spec.config.unk_token, spec.config.decoder_start_token = tgt.id_to_token(UNK), tgt.id_to_token(BOS)
            spec.config.add_source_eos = False  # translate_ids appends it, as qkv's batching
            spec.config.layer_norm_epsilon = exportable.config.eps
            return spec

    return QkvConverter()


def export_ctranslate2(
    exportable: Exportable, out: str | Path, *, quantization: str = "float32", overwrite: bool = False
) -> Path:
    """Write a CTranslate2 model folder (``model.bin``, vocabularies, ``config.json``) to ``out``.

    Args:
        quantization: weight type, ``float32`` (exact), ``int16`` or ``int8``.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"--quantization must be one of {'|'.join(QUANTIZATIONS)}, got {quantization!r}")
    converter = _converter(exportable)

    def write(tmp: Path) -> None:
        converter.convert(str(tmp), quantization=quantization, force=True)
        info = {
            "format": "ctranslate2",
            "source": str(exportable.path),
            "quantization": quantization,
            "max_len": exportable.config.max_len,  # the positions the model knows: outputs are capped there
        }
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    return write_output(out, write, overwrite=overwrite)


class CTranslate2Model:
    """A loaded CTranslate2 export with qkv's vocabularies: decode qkv token ids with CTranslate2.

    Args:
        path: the folder :func:`export_ctranslate2` wrote.
        threads: CPU threads of one translation (``intra_threads``).
        device: ``cpu`` or ``cuda``.

    Example:
        >>> ct2 = CTranslate2Model("exported/ct2")          # doctest: +SKIP
        >>> ct2.decode([[45, 812, 9]], beam_size=1)         # doctest: +SKIP
        [[31, 77, 9]]
    """

    def __init__(self, path: str | Path, *, threads: int = 0, device: str = "cpu") -> None:
        import ctranslate2

        path = Path(path)
        self.translator = ctranslate2.Translator(str(path), device=device, inter_threads=1, intra_threads=threads)
        self.src_vocab = _read_vocabulary(path, "source")
        self.tgt_vocab = _read_vocabulary(path, "target")
        self.tgt_index = {token: i for i, token in enumerate(self.tgt_vocab)}
        info = path / EXPORT_INFO
        self.max_len: int | None = None  # positions the model knows (recorded by export_ctranslate2)
        if info.is_file():
            self.max_len = json.loads(info.read_text(encoding="utf-8")).get("max_len")

    def decode(
        self, sources: Sequence[Sequence[int]], *, beam_size: int = 1, alpha: float = 0.6, max_len_b: int = 50
    ) -> list[list[int]]:
        """Decode one batch of source ids (without EOS); ids out, without BOS/EOS.

        Each output stops where qkv's would (§6.1: its source length, EOS included, + ``max_len_b`` tokens):
        CTranslate2 bounds the batch by its longest sentence and the longer outputs are cut to their own limit,
        which for greedy search is exactly qkv's result. CTranslate2's beam search divides by ``|Y|^alpha``
        (not GNMT's penalty).
        """
        tokens = [[self.src_vocab[i] for i in ids] + [self.src_vocab[EOS]] for ids in sources]
        limits = [len(t) + max_len_b for t in tokens]
        if self.max_len:
            limits = [min(n, self.max_len) for n in limits]
        results = self.translator.translate_batch(
            tokens,
            beam_size=beam_size,
            length_penalty=alpha if beam_size > 1 else 1.0,
            max_decoding_length=max(limits),
            suppress_sequences=[[self.tgt_vocab[PAD]], [self.tgt_vocab[BOS]]],
        )
        index = self.tgt_index
        return [[index[t] for t in r.hypotheses[0][:limit]] for r, limit in zip(results, limits)]


def _read_vocabulary(path: Path, side: str) -> list[str]:
    for name in (f"{side}_vocabulary.json", "shared_vocabulary.json"):
        if (path / name).is_file():
            return json.loads((path / name).read_text(encoding="utf-8"))
    raise FileNotFoundError(f"{path}: no {side}_vocabulary.json or shared_vocabulary.json (not a CTranslate2 model?)")
