"""Decoding speed (issue 6): greedy and beam search, with and without the KV cache, against Hugging Face.

Measures sentences/s and generated tokens/s of :func:`qkv.decode.greedy_search` and
:func:`qkv.decode.beam_search` on a randomly initialised Transformer, and — when ``transformers`` is
importable — of ``MarianMTModel.generate()`` holding the *same weights* (a post-LN, ReLU, sinusoidal,
scaled-embedding Marian of the same sizes). Greedy outputs of the two must agree token for token; the
agreement is printed.

Hugging Face's beam search divides by |Y|^α rather than GNMT's ((5 + |Y|) / 6)^α and stops differently, so
beam outputs may differ slightly; the work is comparable (same beam, same maximum length).

    python bench/decode.py --preset small --batch 32 --src-len 20 --n 3
    python bench/decode.py --preset base --batch 64 --src-len 30 --device cuda

A random model rarely predicts EOS, so most sentences run to the maximum length (source length + 50, §6.1):
tokens/s is the figure to compare. With ``--checkpoint`` the model is a trained one (a joint-vocabulary
Transformer from ``qkv train`` or ``bench/translation.py``) and the input is real text — by default the
Multi30k test set of its source language — sorted by length into batches of ``--batch`` sentences, as
``qkv translate`` does; sentences then end at their own lengths:

    python bench/decode.py --checkpoint runs/bench-cpu-de-en/averaged --batch 64 --n 1
"""

from __future__ import annotations

import argparse

import torch

from _common import add_device_options, benchmark, setup_device
from qkv import Transformer, TransformerConfig
from qkv.decode import BOS, EOS, PAD, beam_search, greedy_search, max_output_lengths, strip_specials


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="small", help="model preset: tiny, small, base, big (default small)"
    )
    parser.add_argument("--vocab", type=int, default=8000, help="shared vocabulary size (default 8000)")
    parser.add_argument("--batch", type=int, default=32, help="sentences per batch (default 32)")
    parser.add_argument("--src-len", type=int, default=20, help="source length in tokens, EOS included")
    parser.add_argument(
        "--max-len-b", type=int, default=50, help="output limit = src length + this (§6.1: 50)"
    )
    parser.add_argument("--beam", type=int, default=5, help="beam size (default 5)")
    parser.add_argument("--alpha", type=float, default=0.6, help="length penalty α (default 0.6)")
    parser.add_argument("--n", type=int, default=3, help="timed repetitions of each measurement (default 3)")
    add_device_options(parser)
    parser.add_argument("--no-hf", action="store_true", help="skip the Hugging Face comparison")
    parser.add_argument("--cache-only", action="store_true", help="skip the (slow) runs without the KV cache")
    parser.add_argument(
        "--checkpoint", default=None, help="a trained translation checkpoint folder (default: a random model)"
    )
    parser.add_argument(
        "--data", default="../shared/data/multi30k", help="with --checkpoint: Multi30k-style folder to read from"
    )
    parser.add_argument("--src", default="de", help="with --checkpoint: source language suffix (default de)")
    parser.add_argument("--tgt", default="en", help="with --checkpoint: reference language, for BLEU (default en)")
    parser.add_argument("--split", default="test", help="with --checkpoint: train, val or test (default test)")
    parser.add_argument("--limit", type=int, default=None, help="with --checkpoint: at most this many sentences")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


# -- Hugging Face: a MarianMTModel with the qkv weights -----------------------------------------------------
def to_marian(model: Transformer):
    """A ``MarianMTModel`` computing the same function as ``model`` (post-LN, ReLU, sinusoidal positions)."""
    from transformers import MarianConfig, MarianMTModel

    c = model.config
    if c.tie_embeddings != "all" or c.norm != "post" or c.positional != "sinusoidal":
        raise ValueError("the Marian copy needs tie_embeddings='all', norm='post', positional='sinusoidal'")
    hf_config = MarianConfig(
        vocab_size=c.tgt_vocab_size,
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
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
        forced_eos_token_id=None,
    )
    hf = MarianMTModel(hf_config).eval()
    ours = model.state_dict()
    copy: dict[str, torch.Tensor] = {"model.shared.weight": ours["src_embed.embedding.weight"]}
    projections = [f"{p}_proj.{w}" for p in ("q", "k", "v", "out") for w in ("weight", "bias")]

    def attn(hf_prefix: str, our_prefix: str) -> None:
        for name in projections:  # the same names on both sides
            copy[f"{hf_prefix}.{name}"] = ours[f"{our_prefix}.{name}"]

    def norm_ffn(hf_layer: str, our_layer: str, norms: dict[str, str]) -> None:
        for hf_norm, our_norm in norms.items():
            for w in ("weight", "bias"):
                copy[f"{hf_layer}.{hf_norm}.{w}"] = ours[f"{our_layer}.{our_norm}.norm.{w}"]
        for w in ("weight", "bias"):
            copy[f"{hf_layer}.fc1.{w}"] = ours[f"{our_layer}.ffn.linear1.{w}"]
            copy[f"{hf_layer}.fc2.{w}"] = ours[f"{our_layer}.ffn.linear2.{w}"]

    for i in range(c.n_layers):
        hf_layer, our_layer = f"model.encoder.layers.{i}", f"encoder.layers.{i}"
        attn(f"{hf_layer}.self_attn", f"{our_layer}.self_attn")
        norm_ffn(hf_layer, our_layer, {"self_attn_layer_norm": "attn_block", "final_layer_norm": "ffn_block"})
    for i in range(c.decoder_layers):
        hf_layer, our_layer = f"model.decoder.layers.{i}", f"decoder.layers.{i}"
        attn(f"{hf_layer}.self_attn", f"{our_layer}.self_attn")
        attn(f"{hf_layer}.encoder_attn", f"{our_layer}.cross_attn")
        norm_ffn(
            hf_layer,
            our_layer,
            {
                "self_attn_layer_norm": "self_block",
                "encoder_attn_layer_norm": "cross_block",
                "final_layer_norm": "ffn_block",
            },
        )
    table = model.src_pos.encodings(c.max_len)  # qkv's interleaved sin/cos table (Marian's is sin | cos)
    copy["model.encoder.embed_positions.weight"] = table
    copy["model.decoder.embed_positions.weight"] = table
    with torch.no_grad():
        params = dict(hf.named_parameters())
        params.update(dict(hf.named_buffers()))
        for name, value in copy.items():
            params[name].copy_(value)
        hf.lm_head.weight = hf.model.shared.weight  # make sure the output projection is the shared matrix
    return hf


def hf_generate(
    hf, src: torch.Tensor, max_new: int, beam: int, alpha: float, use_cache: bool
) -> list[list[int]]:
    out = hf.generate(
        input_ids=src,
        attention_mask=(src != PAD).long(),
        max_new_tokens=max_new,
        num_beams=beam,
        do_sample=False,
        **(dict(length_penalty=alpha, early_stopping=False) if beam > 1 else {}),
        use_cache=use_cache,
        suppress_tokens=[PAD, BOS],  # as qkv.decode: PAD and BOS are never outputs
        num_return_sequences=1,
    )  # (B, 1 + T): decoder_start (BOS), the tokens, EOS, then PAD
    return strip_specials(out.tolist())


def random_setup(args, device: torch.device):
    """A random model of ``--preset`` and one batch of random sources of ``--src-len`` tokens."""
    torch.manual_seed(args.seed)
    config = TransformerConfig.preset(args.preset, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab)
    model = Transformer(config).to(device).eval()
    g = torch.Generator().manual_seed(args.seed)
    src = torch.randint(4, args.vocab, (args.batch, args.src_len), generator=g)
    src[:, -1] = EOS
    what = f"random preset {args.preset}, vocab {args.vocab}, batch {args.batch}, source length {args.src_len}"
    return model, [src.to(device)], what, None


def checkpoint_setup(args, device: torch.device):
    """The trained model of ``--checkpoint``, real sentences sorted by length into batches, and a scorer."""
    from qkv.data.batching import collate
    from qkv.data.multi30k import find_splits
    from qkv.data.text import read_parallel
    from qkv.scoring import score
    from qkv.tasks.translation import Translator

    translator = Translator.load(args.checkpoint, device=device)
    src_path, tgt_path = find_splits(args.data, args.src, args.tgt)[args.split]
    text = read_parallel(src_path, tgt_path)
    sources, references = text.src[: args.limit], text.tgt[: args.limit]
    ids = translator.encode_sources(sources)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together, as qkv translate
    chunks = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
    batches = [collate([(ids[i], []) for i in chunk]).src.to(device) for chunk in chunks]  # (B, S) each
    references = [references[i] for i in order]  # in batch order, as the outputs come
    what = (
        f"checkpoint {args.checkpoint} ({translator.model.num_parameters():,} parameters), "
        f"{len(sources)} sentences of {src_path}, batches of {args.batch}"
    )

    def bleu(outputs: list[list[int]]) -> float:
        return score([translator.tgt_tokenizer.decode(y) for y in outputs], references).bleu

    return translator.model, batches, what, bleu


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device, _ = setup_device(args)
    model, batches, what, bleu = (checkpoint_setup if args.checkpoint else random_setup)(args, device)
    config = model.config
    n_sentences = sum(len(src) for src in batches)
    print(
        f"qkv decoding benchmark: {what} (d_model {config.d_model}, {config.n_layers} layers), "
        f"max output source length + {args.max_len_b}, device {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {args.n} timed runs each after one warm-up"
    )

    def over_batches(decode):  # decode every batch, outputs in batch order
        return lambda: [y for src in batches for y in decode(src)]

    beam_kwargs = dict(beam_size=args.beam, alpha=args.alpha, max_len_b=args.max_len_b)
    caches = (True,) if args.cache_only else (True, False)
    runs = {}  # name -> a function decoding every batch
    for cache in caches:
        suffix = "" if cache else ", no cache"
        runs["qkv greedy" + suffix] = over_batches(
            lambda src, cache=cache: greedy_search(model, src, max_len_b=args.max_len_b, use_cache=cache)
        )
        runs[f"qkv beam {args.beam}" + suffix] = over_batches(
            lambda src, cache=cache: beam_search(model, src, **beam_kwargs, use_cache=cache)
        )
    hf = None
    if not args.no_hf:
        try:
            import transformers
        except ImportError:
            print(
                "Hugging Face comparison skipped: `transformers` is not installed (pip install transformers)"
            )
        else:
            hf = to_marian(model).to(device)
            src = batches[-1][:2]
            with torch.no_grad():
                tgt = torch.randint(4, config.tgt_vocab_size, (2, 7)).to(device)
                hf_logits = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt).logits
                diff = (hf_logits - model(src, tgt)).abs().max()
            print(
                f"transformers {transformers.__version__}: MarianMTModel with the same weights, "
                f"max |logit difference| = {diff:.2e}"
            )
            for beam, label in ((1, "greedy"), (args.beam, f"beam {args.beam}")):
                for cache in caches:
                    name = f"HF generate {label}" + ("" if cache else ", no cache")
                    runs[name] = over_batches(
                        lambda src, beam=beam, cache=cache: hf_generate(
                            hf, src, int((src != PAD).sum(1).max()) + args.max_len_b, beam, args.alpha, cache
                        )
                    )

    limits = [int(n) for src in batches for n in max_output_lengths(model, src, args.max_len_b)]
    results = {}
    print(f"\n{'decoder':32} {'sent/s':>9} {'tokens/s':>10} {'tokens':>8} {'s/run':>8}" + ("  BLEU" if bleu else ""))
    for name, fn in runs.items():
        with torch.inference_mode():
            outputs = fn()  # the warm-up, and the outputs compared below
            seconds = benchmark(fn, device, warmup=0, iters=args.n).mean
        n_tokens = sum(len(y) + (len(y) < limit) for y, limit in zip(outputs, limits))  # + EOS, when there was one
        results[name] = (seconds, outputs)
        print(
            f"{name:32} {n_sentences / seconds:9.1f} {n_tokens / seconds:10.0f} {n_tokens:8d} {seconds:8.3f}"
            + (f"  {bleu(outputs):.1f}" if bleu else "")
        )

    print()
    beam_name = f"qkv beam {args.beam}"
    if not args.cache_only:
        for name in ("qkv greedy", beam_name):
            print(f"KV cache speed-up, {name[4:]}: {results[name + ', no cache'][0] / results[name][0]:.2f}x")
    if hf is not None:
        for qkv_name, hf_name in (
            ("qkv greedy", "HF generate greedy"),
            (beam_name, f"HF generate beam {args.beam}"),
        ):
            for suffix in ("" if cache else ", no cache" for cache in caches):
                a, b = results[qkv_name + suffix], results[hf_name + suffix]
                same = sum(x == y for x, y in zip(a[1], b[1]))
                print(
                    f"qkv / HF {qkv_name[4:] + suffix:18}: {b[0] / a[0]:.2f}x the speed of HF; "
                    f"identical outputs {same}/{n_sentences}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
