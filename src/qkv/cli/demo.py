"""`qkv demo`: placeholder, filled in by the translation pipeline."""


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a small model on a built-in task (no download)")
    p.set_defaults(func=lambda args: 0)
