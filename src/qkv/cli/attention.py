"""`qkv attention`: heatmaps of every layer and head, the alignment view, raw matrices, an HTML explorer."""

from __future__ import annotations

from pathlib import Path

from qkv.cli import CliError


def register(sub) -> None:
    p = sub.add_parser(
        "attention",
        help="save attention heatmaps (PNG/SVG), the alignment, raw matrices and an HTML explorer",
        description="Run the model on SOURCE (and its translation, or --target) and save every attention "
        "map: {kind}_layer{l}.png/.svg (heads as panels), alignment_layer{l}.png/.svg, attention.npz, "
        "attention.html.",
    )
    p.add_argument("source", help="the source sentence (or the sentence to classify, for a classifier)")
    p.add_argument(
        "--model",
        help="checkpoint folder: a translation model or a text classifier (default: a small seeded untrained "
        "demo translation model; for a ViT use `qkv vit attention`)",
    )
    p.add_argument(
        "--target", help="target sentence fed to the decoder (default: the model's own translation)"
    )
    p.add_argument("--out", default="attention", help="output folder (default: ./attention)")
    p.add_argument("--beam-size", type=int, default=5, help="beam size for the translation (1 = greedy)")
    p.add_argument(
        "--layer",
        type=int,
        default=0,
        help="decoder layer of the alignment view, counted from 1 (default: the last)",
    )
    p.add_argument("--formats", default="png,svg", help="comma-separated figure formats (default: png,svg)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.set_defaults(func=run)


def load_translator(model: str | None, device: str = "cpu", precision: str = "fp32"):
    """``(translator, description, untrained)`` for a checkpoint folder, or the seeded demo when ``None``."""
    if model is None:
        from qkv.viz.serve import demo_translator

        return demo_translator(), "untrained seeded demo model (tiny preset, dates task vocabulary)", True
    path = Path(model)
    if not path.is_dir():
        raise CliError(f"checkpoint folder not found: {path}")
    from qkv.tasks.translation import Translator

    translator = Translator.load(path, device=device, precision=precision)
    n = sum(p.numel() for p in translator.model.parameters())
    return translator, f"{path} ({type(translator.model).__name__}, {n:,} parameters)", False


def run(args) -> int:
    from qkv.viz.export import export_attention
    from qkv.viz.maps import transformer_kinds
    from qkv.viz.walk import model_walk

    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    bad = sorted(set(formats) - {"png", "svg", "pdf"})
    if bad or not formats:
        raise CliError(f"--formats takes png, svg or pdf, got {args.formats!r}")
    if args.beam_size < 1:
        raise CliError(f"--beam-size must be at least 1, got {args.beam_size}")
    if not args.source.strip():
        raise CliError("the source sentence is empty")
    if args.model is not None and Path(args.model).is_dir():
        from qkv.train.checkpoint import read_config

        arch = read_config(args.model).get("arch")
        if arch == "classifier":
            return run_classifier(args, formats)
        if arch == "vit":
            raise CliError(f"{args.model} is a ViT, which reads images: use `qkv vit attention --model "
                           f"{args.model} --index N` for its maps over patches and the rollout")
    translator, description, untrained = load_translator(args.model, args.device)
    view = translator.attention(args.source, args.target, beam_size=args.beam_size)
    kinds = transformer_kinds(view.maps, view.src_tokens, view.tgt_tokens)
    n_layers = len(view.maps.cross)
    if n_layers and not 0 <= args.layer <= n_layers:
        raise CliError(f"--layer must be 1 … {n_layers} (or 0 for the last), got {args.layer}")
    target = args.target if args.target is not None else view.translation
    walk = model_walk(translator.model, lambda: translator.attention(args.source, target))  # each cell by hand
    written = export_attention(
        kinds,
        args.out,
        title=f"Attention: {args.source}",
        subtitle=f"{args.source}  →  {target}  [{description}]",
        formats=formats,
        alignment_layer=args.layer - 1 if args.layer else -1,
        walk=walk,
    )
    if untrained:
        print("note: no --model given, so this is an untrained demo model (its translation is noise)")
    print(f"source:      {args.source}")
    print(f"translation: {view.translation}")
    if args.target is not None:
        print(f"target:      {args.target}")
    print(f"wrote {len(written)} files to {Path(args.out)}/ (open attention.html in a browser)")
    return 0


def run_classifier(args, formats: list[str]) -> int:
    """Encoder self-attention of a text classifier ([CLS] + subwords on both axes) and its prediction."""
    import torch

    from qkv.data.tokenizer import TokenizerFile
    from qkv.tasks.text_classification import encode
    from qkv.train.checkpoint import load_checkpoint
    from qkv.viz.export import export_attention
    from qkv.viz.maps import collect_kinds
    from qkv.viz.walk import model_walk

    loaded = load_checkpoint(args.model, device=args.device)
    model, tokenizer = loaded.model, TokenizerFile.load(args.model)
    ids = encode(tokenizer, [args.source], model.config.max_len)[0]
    with torch.no_grad():
        logits, maps = model(torch.tensor([ids], device=args.device), return_attention=True)  # (1, C), L×(1,H,N,N)
    tokens = ["[CLS]", *tokenizer.tokens(args.source)][: len(ids) + 1]
    probs = logits.softmax(-1)[0]
    labels = loaded.config.get("labels") or [str(i) for i in range(len(probs))]
    k = int(probs.argmax())
    kinds = collect_kinds({"encoder_self": maps}, {"encoder_self": (tokens, tokens)})
    walk = model_walk(model, lambda: model(torch.tensor([ids], device=args.device), return_attention=True))
    written = export_attention(
        kinds, args.out, title=f"Attention: {args.source}",
        subtitle=f"{args.source}  →  {labels[k]} ({probs[k]:.2f})  [{args.model}]", formats=formats, walk=walk,
    )
    print(f"sentence:   {args.source}")
    print(f"prediction: {labels[k]} ({probs[k]:.3f})")
    print(f"wrote {len(written)} files to {Path(args.out)}/ (open attention.html in a browser)")
    return 0
