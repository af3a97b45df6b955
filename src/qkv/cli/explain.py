"""`qkv explain`: one attention head of one encoder layer worked out by hand, checked against the model."""

from __future__ import annotations

from qkv.cli import CliError
from qkv.cli.options import add_threads_option, integer, positive_int

EXAMPLES = """\
examples:
  qkv explain "the cat sat on the mat"                     # a small seeded model, layer 1, head 1
  qkv explain "Ein Hund läuft." --model runs/de-en/best --layer 2 --head 3
  qkv explain --hash-table | head -20                      # attention as a soft dictionary lookup
"""


def register(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="walk through one attention head by hand (X, W_Q/W_K/W_V, Q·Kᵀ, √d_k, softmax, W_O), checked",
        description="Compute one head of one encoder layer by hand, print every intermediate matrix, and check "
        "the result against the model's own forward pass (on the CPU).",
        epilog=EXAMPLES,
    )
    p.add_argument("sentence", nargs="?", help="a short source sentence")
    p.add_argument(
        "--model", help="checkpoint or Hugging Face folder: a translation model (Marian) or a text classifier "
        "(BERT) (default: a small seeded model with a word-level vocabulary)"
    )
    p.add_argument("--layer", type=positive_int, default=1, help="encoder layer, counted from 1")
    p.add_argument("--head", type=positive_int, default=1, help="head, counted from 1")
    p.add_argument("--decimals", type=int, default=3, help="decimals in the tables (0 … 8)")
    p.add_argument("--seed", type=integer, default=0, help="seed of the demo model")
    add_threads_option(p)
    p.add_argument(
        "--hash-table",
        action="store_true",
        help="instead: attention as a soft hash table (exact lookup vs softmax(q·K/√d_k)·V, a temperature sweep)",
    )
    p.set_defaults(func=run)


def open_for_explain(path: str, sentence: str):
    """``(model, encoder input (1, S), position labels, description)`` of a translation model or a text
    classifier (qkv checkpoint or Hugging Face folder); a ViT is pointed to ``qkv vit attention``."""
    from qkv.cli._models import describe, open_model
    from qkv.data.batching import collate

    loaded = open_model(path, "cpu", ("translation", "text-classifier", "text-encoder", "image-classifier"))
    if loaded.kind == "image-classifier":
        raise CliError(f"{path} is a ViT, which reads images: `qkv vit attention --model {path} --image FILE` "
                       "draws every head over its patches, each cell worked out by hand in attention.html")
    if loaded.kind == "translation":
        src = collate([(loaded.encode_sources([sentence])[0], [])]).src  # (1, S), </s> appended
        return loaded.model, src, [*loaded.src_tokenizer.tokens(sentence), "</s>"], describe(path, loaded.model)
    view = loaded.attention(sentence)  # a text classifier: [CLS] + subwords
    return loaded.model, view.inputs, view.tokens, describe(path, loaded.model)


def section(title: str) -> None:
    print()
    print(f"── {title} " + "─" * max(0, 100 - len(title)))


def run(args) -> int:
    if not 0 <= args.decimals <= 8:
        raise CliError(f"--decimals must be 0 … 8, got {args.decimals}")
    if args.hash_table:
        from qkv.cli.hashtable import run_hash_table

        return run_hash_table(args)
    if args.sentence is None or not args.sentence.strip():
        raise CliError("the sentence is empty" if args.sentence is not None else "give a sentence (or --hash-table)")
    from qkv.viz.explain import explain_head

    model, src, tokens = load_model(args)
    n_layers = check_layer_and_head(model, args)
    walk = explain_head(model.cpu(), src, args.layer - 1, args.head - 1, tokens)
    print_walk(walk, tokens, args, n_layers)
    ok = print_check(walk)
    print_scaling()
    return 0 if ok else 1


def load_model(args):
    """The model to walk through, the sentence's ids ``(1, S)`` and its tokens (EOS included)."""
    if args.model is None:
        from qkv.viz.explain import word_level_demo

        model, src, tokens = word_level_demo(args.sentence, seed=args.seed)
        print(
            f"model: seeded (seed {args.seed}) untrained Transformer, word-level vocabulary of this sentence; "
            "give --model CHECKPOINT for a trained one"
        )
        return model, src, tokens
    model, src, tokens, description = open_for_explain(args.model, args.sentence)
    print(f"model: {description}")
    return model, src, tokens


def check_layer_and_head(model, args) -> int:
    """Refuse a --layer / --head the model does not have; returns the number of encoder layers."""
    n_layers = len(getattr(getattr(model, "encoder", None), "layers", []))
    if n_layers == 0:
        raise CliError(f"{type(model).__name__} has no Transformer encoder layers to walk through")
    if not 1 <= args.layer <= n_layers:
        raise CliError(f"--layer must be 1 … {n_layers}, got {args.layer}")
    n_heads = model.encoder.layers[0].self_attn.n_heads
    if not 1 <= args.head <= n_heads:
        raise CliError(f"--head must be 1 … {n_heads}, got {args.head}")
    return n_layers


def print_walk(walk, tokens: list[str], args, n_layers: int) -> None:
    """Every matrix of the head's computation, X to MultiHead(X), as tables."""
    from qkv.viz.explain import format_matrix

    d = args.decimals
    s, dm = walk.x.shape
    dh = walk.d_k
    dims = [f"d{j}" for j in range(dm)]
    hdims = [f"d{j}" for j in range(dh)]
    print(f"sentence: {args.sentence!r} -> {s} tokens: {' '.join(tokens)}")
    print(
        f"encoder layer {args.layer} of {n_layers}, head {args.head} of {dm // dh}: "
        f"d_model = {dm}, d_k = d_v = {dh}"
    )

    if walk.embeddings is not None and walk.layer == 0:
        section("token embeddings × √d_model (§3.4)   (S, D)")
        print(format_matrix(walk.embeddings, tokens, dims, d))
        section("+ positional encodings (§3.5)   (S, D)")
        print(format_matrix(walk.positions, tokens, dims, d))
    section(
        f"X: the input of layer {args.layer}   (S, D) = ({s}, {dm})"
        + (
            "  = embeddings + positions"
            if walk.layer == 0
            else "  = the output of the previous layer (post-LN)"
        )
    )
    print(format_matrix(walk.x, tokens, dims, d))
    if not walk.attn_input.equal(walk.x):
        section("pre-LN (option, not the paper): the attention reads LayerNorm(X)")
        print(format_matrix(walk.attn_input, tokens, dims, d))
    for name, w in (("W_Q", walk.w_q), ("W_K", walk.w_k), ("W_V", walk.w_v)):
        section(
            f"{name} of head {args.head}: shape {tuple(w.shape)} = (d_model, d_k)"
            "   (rows of nn.Linear, transposed)"
        )
        print(format_matrix(w, dims, hdims, d))
    for name, t in (("Q = X W_Q + b_Q", walk.q), ("K = X W_K + b_K", walk.k), ("V = X W_V + b_V", walk.v)):
        section(f"{name}   {tuple(t.shape)}")
        print(format_matrix(t, tokens, hdims, d))
    section(f"Q · Kᵀ   ({s}, {s}): row = query, column = key")
    print(format_matrix(walk.scores, tokens, tokens, d))
    section(f"Q · Kᵀ / √d_k = / √{dh} = / {dh**0.5:.3f}   (Eq. 1)")
    print(format_matrix(walk.scaled, tokens, tokens, d))
    section("mask (1 = may attend; padding keys would be 0)")
    print(format_matrix(walk.mask, tokens, tokens, d))
    section("softmax over each row = the attention weights (each row sums to 1)")
    print(format_matrix(walk.weights, tokens, tokens, d))
    print("row sums: " + " ".join(f"{v:.{d}f}" for v in walk.weights.sum(-1).tolist()))
    section(f"head {args.head} = weights · V   ({s}, {dh})")
    print(format_matrix(walk.head_output, tokens, hdims, d))
    section(f"Concat(head_1 … head_{dm // dh})   ({s}, {dm})  (every head computed the same way)")
    print(format_matrix(walk.heads, tokens, dims, d))
    section(f"W_O   {tuple(walk.w_o.shape)}")
    print(format_matrix(walk.w_o, dims, dims, d))
    section(f"MultiHead(X) = Concat · W_O + b_O   ({s}, {dm})")
    print(format_matrix(walk.output, tokens, dims, d))


def print_check(walk) -> bool:
    """The hand computation against the model's own forward pass; True when they agree."""
    section("check against the model's own forward pass (max |by hand − model|)")
    for name, diff in walk.differences().items():
        print(f"  {name:<20} {diff:.2e}")
    ok = walk.max_abs_diff < 1e-4
    print(
        f"  {'OK: the hand computation is the model' if ok else 'MISMATCH'}"
        f" (max abs difference {walk.max_abs_diff:.2e})"
    )
    return ok


def print_scaling() -> None:
    """Why Eq. 1 divides by √d_k, measured (footnote 4 of §3.2.1)."""
    from qkv.viz.explain import format_scaling_table, scaling_table

    section("why divide by √d_k: q, k ~ N(0, 1), 32 keys (footnote 4 of §3.2.1)")
    print(format_scaling_table(scaling_table(n_keys=32), n_keys=32))
    print(
        "Var(q·k) grows like d_k; unscaled, the softmax saturates toward one-hot"
        " (entropy → 0, tiny gradients)."
    )
    print("Dividing by √d_k keeps the variance at 1 and the softmax spread out, whatever d_k.")
