"""Small Hugging Face model folders built locally with random weights (never downloaded), for the import tests.

Each builder writes what ``save_pretrained`` writes for a real hub model — config, weights, tokenizer files —
from a small config and a tokenizer trained here on a few synthetic sentences.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the network

SENTENCES = [
    "ein kleines mädchen spielt im park",
    "zwei hunde laufen über die wiese",
    "der mann liest ein buch",
    "a small girl plays in the park",
    "two dogs run over the meadow",
    "the man reads a book",
] * 10


def _spm_model(vocab_size: int = 40) -> bytes:
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES), model_writer=out, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, minloglevel=2,
    )
    return out.getvalue()


def marian_folder(root: Path, *, activation: str = "swish", **overrides) -> Path:
    """A MarianMTModel with random weights (and a random ``final_logits_bias``) plus its tokenizer files."""
    import sentencepiece as spm
    import transformers

    root.mkdir(parents=True, exist_ok=True)
    (root / "s.spm").write_bytes(_spm_model())
    sp = spm.SentencePieceProcessor(model_file=str(root / "s.spm"))
    skip = {sp.unk_id(), sp.bos_id(), sp.eos_id()}
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if i not in skip]
    vocab = {"</s>": 0, "<unk>": 1, **{p: 2 + i for i, p in enumerate(pieces)}}  # Marian's layout: pad last
    vocab["<pad>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = transformers.MarianTokenizer(
        source_spm=str(root / "s.spm"), target_spm=str(root / "s.spm"), vocab=str(root / "vocab.json")
    )
    v = len(vocab)
    config = dict(
        vocab_size=v, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=v - 1, decoder_start_token_id=v - 1, eos_token_id=0, forced_eos_token_id=None,
        activation_function=activation, scale_embedding=True, dropout=0.1,
    )
    config.update(overrides)
    torch.manual_seed(0)
    model = transformers.MarianMTModel(transformers.MarianConfig(**config)).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(std=0.5)  # zero when new: make it matter
    folder = root / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def wordpiece_tokenizer(folder: Path):
    """A BERT WordPiece tokenizer trained on SENTENCES, saved as transformers' BertTokenizerFast would."""
    import transformers
    from tokenizers.implementations import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(SENTENCES, vocab_size=80, min_frequency=1, show_progress=False,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    fast = transformers.BertTokenizerFast(tokenizer_object=tok._tokenizer, unk_token="[UNK]", sep_token="[SEP]",
                                          pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    fast.save_pretrained(folder)
    return fast


def bert_folder(root: Path, *, head: bool = True, **overrides) -> Path:
    """A BertForSequenceClassification (or BertModel) with random weights and a WordPiece tokenizer."""
    import transformers

    folder = root / ("bert" if head else "bert-model")
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = wordpiece_tokenizer(folder)
    config = dict(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=40, num_labels=3, pad_token_id=0,
        id2label={0: "negative", 1: "neutral", 2: "positive"}, label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    config.update(overrides)
    torch.manual_seed(0)
    cls = transformers.BertForSequenceClassification if head else transformers.BertModel
    model = cls(transformers.BertConfig(**config)).eval()
    model.save_pretrained(folder)
    return folder


def vit_folder(root: Path, **overrides) -> Path:
    """A ViTForImageClassification with random weights and its image processor config."""
    import transformers

    folder = root / "vit"
    config = dict(
        image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=3, id2label={0: "cat", 1: "dog", 2: "bird"},
        label2id={"cat": 0, "dog": 1, "bird": 2},
    )
    config.update(overrides)
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**config)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # ViT starts with zero [CLS] / head: make every weight matter
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 8, "width": 8}).save_pretrained(folder)
    return folder


def eager(cls_name: str, folder: Path, dtype=torch.float32):
    """The Hugging Face reference model loaded back from ``folder``, with attention weights available."""
    import transformers

    model = getattr(transformers, cls_name).from_pretrained(folder, attn_implementation="eager")
    return model.to(dtype).eval()
