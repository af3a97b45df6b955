"""Export a qkv Transformer to two ONNX graphs, an encoder and one decoder step with the KV cache as inputs
and outputs, and run them with onnxruntime through qkv's own searches.

Legend: B batch, S source length, T cached target positions, D d_model, H heads, Dh head dim, V target
vocabulary size, L decoder layers.

    encoder.onnx       src (B, S) int64                                  -> cross_kv (B, L, 2, H, S, Dh)
    decoder_step.onnx  token (B, 1) int64, position (1,) int64,
                       cross_kv (B, L, 2, H, S, Dh), src_mask (B, 1, 1, S) bool,
                       past_kv (B, L, 2, H, T, Dh)                       -> logits (B, V),
                                                                            present_kv (B, L, 2, H, T + 1, Dh)

The encoder graph runs the whole encoder and projects its output once into every decoder layer's
cross-attention keys and values (the static cache of qkv's decoding); a decoder step embeds one token at
``position``, appends its self-attention keys/values to ``past_kv`` (``T = 0`` at the first step) and returns
the next-token logits. Both graphs are traced from qkv's own modules (embeddings, residual blocks, LayerNorms,
FFN, Eq. 1), so any qkv Transformer exports, pre-LN, learned positions and GELU included.

:class:`OnnxTransformer` wraps the two sessions in the interface qkv's searches use (``encode``, ``src_mask``,
``new_cache``, ``decode``): :func:`qkv.decode.greedy_search` and :func:`qkv.decode.beam_search` run on it as
they run on the PyTorch model (:func:`onnx_greedy` is the greedy loop over the sessions).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from qkv.decode import greedy_search
from qkv.interop.export_common import EXPORT_INFO, Exportable, write_output
from qkv.models.transformer import Transformer, TransformerConfig
from qkv.nn.attention import scaled_dot_product_attention
from qkv.nn.masks import padding_mask

ENCODER, DECODER = "encoder.onnx", "decoder_step.onnx"
OPSET = 17  # LayerNormalization is one ONNX op from opset 17


def _split(x: Tensor, n_heads: int) -> Tensor:
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)  # (B, t, D) -> (B, H, t, Dh)


def _merge(x: Tensor) -> Tensor:
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)  # (B, H, t, Dh) -> (B, t, D)


class EncoderGraph(nn.Module):
    """``src`` ``(B, S)`` -> the cross-attention keys/values of every decoder layer ``(B, L, 2, H, S, Dh)``."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> Tensor:
        memory = self.model.encode(src)  # (B, S, D)
        n_heads = self.model.config.n_heads
        kv = [
            torch.stack([_split(a.k_proj(memory), n_heads), _split(a.v_proj(memory), n_heads)], dim=1)
            for a in (layer.cross_attn for layer in self.model.decoder.layers)
        ]  # L × (B, 2, H, S, Dh)
        return torch.stack(kv, dim=1)  # (B, L, 2, H, S, Dh)


class DecoderStepGraph(nn.Module):
    """One decoding step of :meth:`qkv.Transformer.decode` with the KV cache as tensors (see the module)."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def _positions(self) -> Tensor:
        pos = self.model.tgt_pos
        return pos.table if pos.kind == "sinusoidal" else pos.embedding.weight  # (max_len, D)

    def forward(self, token: Tensor, position: Tensor, cross_kv: Tensor, src_mask: Tensor, past_kv: Tensor):
        m = self.model
        n_heads = m.config.n_heads
        x = m.tgt_embed(token) + self._positions().index_select(0, position)  # (B, 1, D): ×√D + PE (§3.4, §3.5)
        presents = []
        for i, layer in enumerate(m.decoder.layers):

            def self_attention(h: Tensor, i=i, a=layer.self_attn) -> tuple[Tensor, None]:
                k = torch.cat([past_kv[:, i, 0], _split(a.k_proj(h), n_heads)], dim=2)  # (B, H, T + 1, Dh)
                v = torch.cat([past_kv[:, i, 1], _split(a.v_proj(h), n_heads)], dim=2)
                presents.append(torch.stack([k, v], dim=1))  # (B, 2, H, T + 1, Dh)
                out, _ = scaled_dot_product_attention(_split(a.q_proj(h), n_heads), k, v)  # the last position
                return a.out_proj(_merge(out)), None  # sees every key: no mask

            def cross_attention(h: Tensor, i=i, a=layer.cross_attn) -> tuple[Tensor, None]:
                q = _split(a.q_proj(h), n_heads)  # (B, H, 1, Dh)
                out, _ = scaled_dot_product_attention(q, cross_kv[:, i, 0], cross_kv[:, i, 1], src_mask)
                return a.out_proj(_merge(out)), None

            x, _ = layer.self_block(x, self_attention)
            x, _ = layer.cross_block(x, cross_attention)
            x, _ = layer.ffn_block(x, lambda h, layer=layer: (layer.ffn(h), None))
        if m.decoder.final_norm is not None:
            x = m.decoder.final_norm(x)
        return m.generator(x)[:, 0], torch.stack(presents, dim=1)  # (B, V), (B, L, 2, H, T + 1, Dh)


def _example_inputs(config: TransformerConfig) -> tuple[Tensor, ...]:
    b, s, t = 2, 5, 3
    src = torch.full((b, s), 4, dtype=torch.long)
    src[:, -1] = 2
    h, dh, n = config.n_heads, config.d_head, config.decoder_layers
    cross_kv = torch.zeros(b, n, 2, h, s, dh)
    past_kv = torch.zeros(b, n, 2, h, t, dh)
    token = torch.full((b, 1), 4, dtype=torch.long)
    return src, (token, torch.tensor([t]), cross_kv, padding_mask(src, config.pad_id), past_kv)


def write_onnx_graphs(model: Transformer, folder: Path) -> None:
    """Trace ``model`` into ``folder/encoder.onnx`` and ``folder/decoder_step.onnx``."""
    src, step_inputs = _example_inputs(model.config)
    kv_axes = {0: "batch", 4: "src_len"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            EncoderGraph(model), (src,), str(folder / ENCODER), dynamo=False, opset_version=OPSET,
            input_names=["src"], output_names=["cross_kv"],
            dynamic_axes={"src": {0: "batch", 1: "src_len"}, "cross_kv": kv_axes},
        )
        torch.onnx.export(
            DecoderStepGraph(model), step_inputs, str(folder / DECODER), dynamo=False, opset_version=OPSET,
            input_names=["token", "position", "cross_kv", "src_mask", "past_kv"],
            output_names=["logits", "present_kv"],
            dynamic_axes={
                "token": {0: "batch"}, "cross_kv": kv_axes, "src_mask": {0: "batch", 3: "src_len"},
                "past_kv": {0: "batch", 4: "past_len"}, "logits": {0: "batch"},
                "present_kv": {0: "batch", 4: "present_len"},
            },
        )


def export_onnx(exportable: Exportable, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``encoder.onnx``, ``decoder_step.onnx``, the tokenizers and ``qkv_export.json`` (the model config)."""
    model = exportable.model

    def write(tmp: Path) -> None:
        write_onnx_graphs(model, tmp)
        exportable.tokenizers.save(tmp)
        info = {"format": "onnx", "source": str(exportable.path), "model": model.config.to_dict()}
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    return write_output(out, write, overwrite=overwrite)


class OnnxCache:
    """The self-attention keys/values of every decoder layer ``(B, L, 2, H, T, Dh)`` between steps (numpy)."""

    def __init__(self) -> None:
        self.past = None
        self.offset = 0

    def reorder(self, index: Tensor) -> None:
        if self.past is not None:
            self.past = self.past[index.cpu().numpy()]


class OnnxTransformer(nn.Module):
    """The exported graphs behind qkv's decoding interface, run by onnxruntime on the CPU.

    Args:
        folder: what :func:`export_onnx` wrote.
        threads: onnxruntime intra-op threads (0: its default).

    Example:
        >>> onnx_model = OnnxTransformer("exported/onnx")                # doctest: +SKIP
        >>> qkv.decode.beam_search(onnx_model, src, beam_size=5)         # doctest: +SKIP
    """

    grouped_memory = False  # beam search repeats the cross keys/values for each beam

    def __init__(self, folder: str | Path, *, threads: int = 0) -> None:
        super().__init__()
        import onnxruntime as ort

        folder = Path(folder)
        info = json.loads((folder / EXPORT_INFO).read_text(encoding="utf-8"))
        self.config = TransformerConfig.from_dict(info["model"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(folder / ENCODER), options, providers=providers)
        self.decoder = ort.InferenceSession(str(folder / DECODER), options, providers=providers)

    def src_mask(self, src: Tensor) -> Tensor:
        return padding_mask(src, self.config.pad_id)  # (B, 1, 1, S)

    def encode(self, src: Tensor) -> Tensor:
        """The cross-attention keys/values ``(B, L, 2, H, S, Dh)``: the "memory" qkv's searches pass around."""
        (cross_kv,) = self.encoder.run(None, {"src": src.cpu().numpy()})
        return torch.from_numpy(cross_kv)

    def new_cache(self) -> OnnxCache:
        return OnnxCache()

    def decode(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor, cache: OnnxCache | None = None) -> Tensor:
        """Logits ``(B, t, V)`` of the ``t`` new tokens of ``tgt`` ``(B, t)``, one decoder step each."""
        cache = OnnxCache() if cache is None else cache  # no cache: the whole prefix, step by step
        c = self.config
        if cache.past is None:
            shape = (tgt.shape[0], c.decoder_layers, 2, c.n_heads, 0, c.d_head)
            cache.past = torch.zeros(shape).numpy()  # (B, L, 2, H, 0, Dh)
        feeds = {"cross_kv": memory.numpy(), "src_mask": memory_mask.numpy()}
        tokens = tgt.cpu().numpy()
        logits = []
        for j in range(tokens.shape[1]):
            position = torch.tensor([cache.offset]).numpy()
            step_logits, cache.past = self.decoder.run(
                None, {**feeds, "token": tokens[:, j : j + 1], "position": position, "past_kv": cache.past}
            )
            cache.offset += 1
            logits.append(torch.from_numpy(step_logits))
        return torch.stack(logits, dim=1)  # (B, t, V)


def onnx_greedy(model: OnnxTransformer, src: Tensor, *, max_len_b: int = 50) -> list[list[int]]:
    """Greedy decoding over the ONNX sessions: qkv's :func:`~qkv.decode.greedy_search` (same rules, same limits)."""
    return greedy_search(model, src, max_len_b=max_len_b)
