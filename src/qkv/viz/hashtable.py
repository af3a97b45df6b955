"""Attention as a soft hash table: a dictionary lookup next to the attention of Eq. 1 on the same table.

A dictionary (a hash table) returns the value of the key that *equals* the query, and fails for any other
query. Attention (§3.2.1, Eq. 1) returns a weighted mix of *all* values, weighted by how similar each key is
to the query::

    exact(q)  = V[i]                     if K[i] == q, else no answer (KeyError)
    soft(q)   = softmax(q·Kᵀ / (τ √d_k)) V                   Eq. 1 with a temperature τ (τ = 1: the paper)

Sharpening the scores (τ → 0) turns the softmax into a one-hot on the best-scoring key, i.e. into hard
attention (:func:`qkv.nn.attention.hard_attention_weights`), and the soft lookup into the exact one, as long
as the key equal to the query is also the one with the highest dot product: true here because the keys have
unit length (by Cauchy–Schwarz q·k ≤ |q||k|, with equality only for k = q). A query that equals no key still
gets an answer: a blend of the values of the keys it resembles, tending to the value of the nearest key
(by dot product) as τ → 0.

:func:`soft_hash_table` computes all of it with the library's own :func:`~qkv.nn.scaled_dot_product_attention`
and returns a :class:`SoftHashTable` (``.to_dict()`` is JSON-able, for a web page);
:func:`format_hash_table` writes it as text tables (``qkv explain --hash-table``).

Legend: N keys in the table, d_k key width, d_v value width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from qkv.nn.attention import scaled_dot_product_attention

# The default table: unit-length keys (d_k = 4) and scalar values; car and bus are similar keys.
DEFAULT_KEYS: dict[str, list[float]] = {
    "cat": [1.0, 0.0, 0.0, 0.0],
    "dog": [0.0, 1.0, 0.0, 0.0],
    "car": [0.0, 0.0, 1.0, 0.0],
    "bus": [0.0, 0.0, 0.6, 0.8],
}
DEFAULT_VALUES: list[list[float]] = [[1.0], [2.0], [3.0], [4.0]]
# "dog" equals a key; "kitten" (between cat and dog, nearer cat) equals none.
DEFAULT_QUERIES: dict[str, list[float]] = {"dog": [0.0, 1.0, 0.0, 0.0], "kitten": [0.8, 0.6, 0.0, 0.0]}
DEFAULT_TEMPERATURES: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.01)


@dataclass
class SweepRow:
    """The soft lookup of one query at one temperature τ (scores scaled by 1 / (τ √d_k))."""

    temperature: float  # τ; "hard" rows use argmax weights (τ → 0)
    weights: list[float]  # (N,) attention weights over the keys, sum 1
    output: list[float]  # (d_v,) the soft lookup, weights · V
    error: float  # max |output − target|: the target is the exact lookup, or the nearest key's value
    max_weight: float  # the largest weight (1 = one-hot)
    entropy: float  # of the weights, in nats (ln N = uniform, 0 = one-hot)
    hard: bool = False  # True for the argmax row (hard attention)


@dataclass
class QueryLookup:
    """One query: its exact (dictionary) lookup, its nearest key, and the soft lookup at every temperature."""

    name: str
    query: list[float]  # (d_k,)
    exact_key: str | None  # the key equal to the query; None: a dictionary raises KeyError
    exact_value: list[float] | None  # (d_v,) its value
    scores: list[float]  # (N,) q·K / √d_k at τ = 1
    nearest_key: str  # the key with the highest score: the limit of the soft lookup as τ → 0
    target: list[float]  # (d_v,) what the soft lookup converges to: exact_value, else the nearest key's value
    sweep: list[SweepRow] = field(default_factory=list)


@dataclass
class SoftHashTable:
    """The whole demonstration; :meth:`to_dict` is JSON-able."""

    keys: list[str]  # (N,) names
    key_vectors: list[list[float]]  # (N, d_k)
    values: list[list[float]]  # (N, d_v)
    d_k: int
    queries: list[QueryLookup]

    def to_dict(self) -> dict:
        return asdict(self)


def _entropy(p: Tensor) -> float:
    return float(-(p * torch.log(p.clamp_min(1e-300))).sum()) + 0.0  # + 0.0: no -0.0 for a one-hot


def _lookup_row(q: Tensor, k: Tensor, v: Tensor, target: Tensor, temperature: float | None) -> SweepRow:
    """Eq. 1 on the table for one query; ``temperature=None`` is hard attention (argmax)."""
    hard = temperature is None
    scaled_q = q if hard else q / temperature  # q / τ: the scores q·K / (τ √d_k)
    out, w = scaled_dot_product_attention(scaled_q[None], k, v, hard=hard)  # (1, d_v), (1, N)
    w, out = w[0], out[0]
    return SweepRow(
        temperature=0.0 if hard else float(temperature),
        weights=w.tolist(),
        output=out.tolist(),
        error=float((out - target).abs().max()),
        max_weight=float(w.max()),
        entropy=_entropy(w),
        hard=hard,
    )


def soft_hash_table(
    keys: dict[str, Sequence[float]] | None = None,
    values: Sequence[Sequence[float]] | None = None,
    queries: dict[str, Sequence[float]] | None = None,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
) -> SoftHashTable:
    """Compare a dictionary lookup with attention's soft lookup on a small table of keys and values.

    Args:
        keys: name -> key vector ``(d_k,)`` (default :data:`DEFAULT_KEYS`: unit vectors, so the key equal to a
            query is also its best-scoring key).
        values: one value vector ``(d_v,)`` per key, in the order of ``keys``.
        queries: name -> query vector ``(d_k,)``; a query may equal a key or none.
        temperatures: τ of the sweep, each > 0 (1 = Eq. 1 as in the paper); a final hard (argmax) row is added.

    Returns:
        A :class:`SoftHashTable`: for every query, the exact lookup, the scores, and the soft lookup's weights,
        output and error at every τ and hard.

    Example:
        >>> table = soft_hash_table()
        >>> dog = table.queries[0]
        >>> dog.exact_value, [round(r.error, 3) for r in dog.sweep][-3:]
        ([2.0], [0.0, 0.0, 0.0])
    """
    keys = DEFAULT_KEYS if keys is None else keys
    values = DEFAULT_VALUES if values is None else values
    queries = DEFAULT_QUERIES if queries is None else queries
    names = list(keys)
    k = torch.tensor([list(keys[n]) for n in names], dtype=torch.float64)  # (N, d_k)
    v = torch.tensor([list(x) for x in values], dtype=torch.float64)  # (N, d_v)
    if k.dim() != 2 or k.shape[0] == 0:
        raise ValueError(f"keys must be a non-empty table of equal-length vectors, got shape {tuple(k.shape)}")
    if v.dim() != 2 or v.shape[0] != k.shape[0]:
        raise ValueError(f"values must hold one vector per key ({k.shape[0]}), got shape {tuple(v.shape)}")
    bad = [t for t in temperatures if not (isinstance(t, (int, float)) and t > 0)]
    if bad:
        raise ValueError(f"temperatures must be positive numbers, got {bad}")
    d_k = k.shape[1]
    lookups = []
    for name, vector in queries.items():
        q = torch.tensor(list(vector), dtype=torch.float64)  # (d_k,)
        if q.shape != (d_k,):
            raise ValueError(f"query {name!r} has {q.numel()} entries, the keys have d_k = {d_k}")
        equal = [i for i in range(len(names)) if torch.equal(k[i], q)]  # the dictionary's lookup: equality
        scores = (k @ q) / math.sqrt(d_k)  # (N,)
        nearest = int(scores.argmax())
        target = v[equal[0]] if equal else v[nearest]
        lookup = QueryLookup(
            name=name,
            query=q.tolist(),
            exact_key=names[equal[0]] if equal else None,
            exact_value=v[equal[0]].tolist() if equal else None,
            scores=scores.tolist(),
            nearest_key=names[nearest],
            target=target.tolist(),
        )
        lookup.sweep = [_lookup_row(q, k, v, target, float(t)) for t in temperatures]
        lookup.sweep.append(_lookup_row(q, k, v, target, None))
        lookups.append(lookup)
    return SoftHashTable(names, k.tolist(), v.tolist(), d_k, lookups)


def _vec(x: Sequence[float], decimals: int) -> str:
    return "[" + ", ".join(f"{a:.{decimals}f}" for a in x) + "]"


def format_hash_table(table: SoftHashTable, decimals: int = 3) -> str:
    """The table, then for each query its exact lookup and the temperature sweep, as aligned text."""
    d = decimals
    name_w = max(len(n) for n in table.keys)
    lines = [f"the table (d_k = {table.d_k}):  key vector  ->  value"]
    for n, kv, val in zip(table.keys, table.key_vectors, table.values):
        lines.append(f"  {n:<{name_w}}  {_vec(kv, 1)}  ->  {_vec(val, d)}")
    for lk in table.queries:
        lines.append("")
        lines.append(f"query {lk.name!r} = {_vec(lk.query, 2)}")
        if lk.exact_key is not None:
            lines.append(f"  exact lookup (dictionary): equals key {lk.exact_key!r} -> {_vec(lk.exact_value, d)}")
        else:
            lines.append("  exact lookup (dictionary): equals no key -> KeyError, no answer")
            lines.append(f"  nearest key by q·k: {lk.nearest_key!r} -> {_vec(lk.target, d)} (the limit as τ → 0)")
        lines.append("  scores q·k/√d_k: " + "  ".join(f"{n} {s:.{d}f}" for n, s in zip(table.keys, lk.scores)))
        width = max(d + 3, *(len(n) for n in table.keys))
        target = "exact" if lk.exact_key is not None else "nearest"
        head = ["τ", *table.keys, "output", f"|out − {target}|", "max w", "entropy"]
        widths = [6, *([width] * len(table.keys)), 9 + d, 15, d + 3, d + 4]
        lines.append("  " + "  ".join(h.rjust(w) for h, w in zip(head, widths)))
        for r in lk.sweep:
            cells = [
                "hard" if r.hard else f"{r.temperature:g}",
                *(f"{x:.{d}f}" for x in r.weights),
                _vec(r.output, d),
                f"{r.error:.2e}",
                f"{r.max_weight:.{d}f}",
                f"{r.entropy:.{d}f}",
            ]
            lines.append("  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths)))
    return "\n".join(lines)
