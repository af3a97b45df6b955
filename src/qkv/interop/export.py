"""``export(model_dir, to, out)``: one qkv translation checkpoint to Hugging Face, CTranslate2 or ONNX.

Every exporter first checks that its format computes the qkv model exactly and refuses, naming the option,
what it cannot express (:class:`~qkv.interop.export_common.ExportError`); nothing is written then. The output
folder is filled atomically.

    Format        what is written                                       what it cannot express
    hf            MarianMTModel + tokenizer (from_pretrained)          pre-LN, learned positions, eps != 1e-5,
                                                                        separate vocabularies
    ctranslate2   CTranslate2 TransformerSpec (float32|int16|int8)      (every qkv Transformer)
    onnx          encoder.onnx + decoder_step.onnx (KV cache in/out)    (every qkv Transformer)

The RNN baselines and the encoder-only models are refused by every format, and so are the options no writer
carries over yet (:data:`WRITTEN_AS`): hard or windowed attention everywhere; Marian's half-split positions,
unscaled embeddings and output bias (the options an imported OPUS-MT model has) for hf and ctranslate2.
"""

from __future__ import annotations

from pathlib import Path

from qkv.interop.export_common import ExportError, load_exportable, refuse_unless

FORMATS = ("hf", "ctranslate2", "onnx")

_PAPER_ATTENTION = {"attention": "soft", "attention_window": None}
#: per format, the TransformerConfig options its writer supports at one value only (the paper's)
WRITTEN_AS: dict[str, dict[str, object]] = {
    "hf": {**_PAPER_ATTENTION, "positional_layout": "interleaved", "scale_embeddings": True, "output_bias": False},
    "ctranslate2": {**_PAPER_ATTENTION, "scale_embeddings": True, "output_bias": False},
    "onnx": _PAPER_ATTENTION,
}


def export(
    model_dir: str | Path, to: str, out: str | Path, *, quantization: str = "float32", overwrite: bool = False
) -> Path:
    """Export the checkpoint folder ``model_dir`` to format ``to`` in the folder ``out``; returns ``out``.

    Args:
        model_dir: a qkv translation checkpoint (``config.json``, ``model.safetensors``, tokenizer files).
        to: ``hf``, ``ctranslate2`` or ``onnx``.
        out: the folder to write (must be absent or empty unless ``overwrite``).
        quantization: CTranslate2 only: ``float32`` (exact), ``int16`` or ``int8``.

    Raises:
        ExportError: the format cannot express the model (one line naming the option).
        ValueError: ``out`` is taken (not empty, or not a folder) and ``overwrite`` is not set.
    """
    if to not in FORMATS:
        raise ExportError(f"unknown export format {to!r}; expected one of {', '.join(FORMATS)}")
    if quantization != "float32" and to != "ctranslate2":
        raise ExportError(f"--quantization {quantization} applies to --to ctranslate2 only, not {to}")
    exportable = load_exportable(model_dir)
    for option, value in WRITTEN_AS[to].items():
        got = getattr(exportable.config, option)
        refuse_unless(got == value, option, got, to, f"the {to} exporter writes only {option}={value!r}")
    if to == "hf":
        from qkv.interop.export_hf import export_hf

        return export_hf(exportable, out, overwrite=overwrite)
    if to == "ctranslate2":
        from qkv.interop.export_ctranslate2 import export_ctranslate2

        return export_ctranslate2(exportable, out, quantization=quantization, overwrite=overwrite)
    from qkv.interop.export_onnx import export_onnx

    return export_onnx(exportable, out, overwrite=overwrite)
