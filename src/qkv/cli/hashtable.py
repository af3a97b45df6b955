"""`qkv explain --hash-table`: attention as a soft hash table, in numbers (see :mod:`qkv.viz.hashtable`)."""

from __future__ import annotations

from qkv.cli import CliError


def run_hash_table(args) -> int:
    """Print the dictionary lookup, the soft lookup and the temperature sweep of the default table."""
    from qkv.viz.hashtable import format_hash_table, soft_hash_table

    if args.sentence is not None or args.model is not None:
        raise CliError("--hash-table takes no sentence and no --model: it looks up a small fixed table")
    print("Attention as a soft hash table: a dictionary returns the value of the key EQUAL to the query;")
    print("attention returns softmax(q·Kᵀ / (τ·√d_k)) · V, a mix of ALL values weighted by similarity (Eq. 1,")
    print("τ = 1 in the paper). Lowering the temperature τ sharpens the weights toward one-hot (hard attention,")
    print("the last row): the soft lookup becomes the exact one. The keys have unit length, so the key equal to")
    print("the query is also its best-scoring one.")
    print()
    print(format_hash_table(soft_hash_table(), args.decimals))
    print()
    print("'kitten' equals no key: a dictionary has no answer, attention still returns a blend of the values of")
    print("the keys it resembles (cat, dog), which tends to the value of the nearest key as τ → 0.")
    return 0
