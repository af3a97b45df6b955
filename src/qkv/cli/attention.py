"""`qkv attention`: heatmaps of every layer and head, the alignment view, raw matrices, an HTML explorer."""

from __future__ import annotations

from pathlib import Path

from qkv.cli import CliError
from qkv.cli._models import describe, load_translator, open_model
from qkv.cli.options import add_device_options, add_hidden_alias, add_search_options, non_negative_int, positive_int

EXAMPLES = """\
examples:
  qkv attention "Ein Hund läuft." --model runs/de-en/best --out attention/dog
  qkv attention "Ein Hund läuft." --model runs/de-en/best --target "A dog runs." --formats png
  qkv attention "a gripping , funny film" --model runs/sst2      # a text classifier's self-attention
  qkv attention "may 4 two thousand one"                          # no --model: an untrained demo model
"""


def register(sub) -> None:
    p = sub.add_parser(
        "attention",
        help="save attention heatmaps (PNG/SVG), the alignment, raw matrices and an HTML explorer",
        description="Run the model on SOURCE (and its translation, or --target) and save every attention "
        "map: {kind}_layer{l}.png/.svg (heads as panels), alignment_layer{l}.png/.svg, attention.npz, "
        "attention.html.",
        epilog=EXAMPLES,
    )
    p.add_argument("source", help="the source sentence (or the sentence to classify, for a classifier)")
    p.add_argument(
        "--model",
        help="checkpoint folder or Hugging Face folder: a translation model (Marian) or a text classifier (BERT) "
        "(default: a small seeded untrained demo translation model; for a ViT use `qkv vit attention`)",
    )
    p.add_argument(
        "--target", help="target sentence fed to the decoder (default: the model's own translation)"
    )
    p.add_argument("--out", default="attention", help="output folder")
    add_search_options(p)  # --beam, --alpha, --early-stopping: the search of the translation shown
    add_hidden_alias(p, "--beam-size", dest="beam", type=positive_int)
    p.add_argument(
        "--layer",
        type=non_negative_int,
        default=0,
        help="decoder layer of the alignment view, counted from 1 (default: the last)",
    )
    p.add_argument("--formats", default="png,svg", help="comma-separated figure formats (default: png,svg)")
    add_device_options(p, default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from qkv.viz.export import export_attention
    from qkv.viz.maps import transformer_kinds
    from qkv.viz.walk import model_walk

    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    bad = sorted(set(formats) - {"png", "svg", "pdf"})
    if bad or not formats:
        raise CliError(f"--formats takes png, svg or pdf, got {args.formats!r}")
    if not args.source.strip():
        raise CliError("the source sentence is empty")
    if args.model is not None:
        loaded = open_model(args.model, args.device)
        if loaded.kind == "image-classifier":
            raise CliError(f"{args.model} is a ViT, which reads images: use `qkv vit attention --model "
                           f"{args.model} --image FILE` for its maps over patches and the rollout")
        if loaded.kind != "translation":
            return run_classifier(args, formats, loaded)
        translator, description, untrained = loaded, describe(args.model, loaded.model), False
    else:
        translator, description, untrained = load_translator(None)
    translator.early_stopping = args.early_stopping
    view = translator.attention(args.source, args.target, beam_size=args.beam, alpha=args.alpha)
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


def run_classifier(args, formats: list[str], classifier) -> int:
    """Encoder self-attention of a text classifier ([CLS] + subwords on both axes) and its prediction."""
    from qkv.viz.export import export_attention
    from qkv.viz.maps import collect_kinds
    from qkv.viz.walk import model_walk

    view = classifier.attention(args.source)
    model, ids = classifier.model, view.inputs.to(classifier.device)  # (1, T)
    kinds = collect_kinds({"encoder_self": view.maps}, {"encoder_self": (view.tokens, view.tokens)})
    walk = model_walk(model, lambda: model(ids, return_attention=True))
    p = view.prediction
    answer = f"{p.label} ({p.probability:.2f})" if p is not None else "no trained head"
    written = export_attention(
        kinds, args.out, title=f"Attention: {args.source}",
        subtitle=f"{args.source}  →  {answer}  [{args.model}]", formats=formats, walk=walk,
    )
    print(f"sentence:   {args.source}")
    print(f"prediction: {p.label} ({p.probability:.3f})" if p is not None else
          "prediction: none (a text encoder without a trained head: the maps only)")
    print(f"wrote {len(written)} files to {Path(args.out)}/ (open attention.html in a browser)")
    return 0
