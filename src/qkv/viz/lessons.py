"""The numbers of the explorer's lesson views: why √d_k (§3.2.1), the sinusoidal positions (§3.5) and
attention as a soft hash table.

All are computed here, in Python, by the code the terminal and the figures use, and embedded in the page as
JSON (no CDN, works offline):

- :func:`scaling_data`: :func:`qkv.viz.explain.scaling_table` (the table ``qkv explain`` prints) for every
  power of two d_k from 1 to 1024; the page's slider moves over these rows.
- :func:`positions_data`: :func:`qkv.nn.positional.sinusoidal_table` and
  :func:`qkv.viz.positions.position_similarity` (what ``qkv positions`` draws).
- ``hash_table``: :func:`qkv.viz.hashtable.soft_hash_table` (what ``qkv explain --hash-table`` prints); the
  page's slider moves over its temperatures.

Legend: T positions, D d_model.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch

from qkv.nn.positional import sinusoidal_table
from qkv.viz.explain import scaling_table
from qkv.viz.hashtable import soft_hash_table
from qkv.viz.positions import position_similarity

SCALING_D_KS = tuple(2**i for i in range(11))  # 1 … 1024


def scaling_data(n_keys: int = 32, n_queries: int = 256, seed: int = 0) -> dict:
    """``{"n_keys", "ln_n_keys", "rows": [ScalingRow as dict …]}`` for d_k = 1, 2, 4 … 1024."""
    rows = scaling_table(SCALING_D_KS, n_keys=n_keys, n_queries=n_queries, seed=seed)
    return {"n_keys": n_keys, "ln_n_keys": math.log(n_keys), "seed": seed, "rows": [asdict(r) for r in rows]}


def positions_data(d_model: int = 128, n_positions: int = 50, decimals: int = 3) -> dict:
    """The encoding matrix ``(T, D)`` and the similarity of positions ``(T, T)``, rounded for JSON."""
    if d_model < 2 or d_model % 2:
        raise ValueError(f"d_model must be an even number >= 2, got {d_model}")
    if n_positions < 1:
        raise ValueError(f"n_positions must be positive, got {n_positions}")
    table = sinusoidal_table(n_positions, d_model).double()  # (T, D)
    sim = position_similarity(table)  # (T, T)
    return {
        "d_model": d_model,
        "table": torch.round(table, decimals=decimals).tolist(),
        "similarity": torch.round(sim, decimals=decimals).tolist(),
    }


def lessons_data(d_model: int = 128, n_positions: int = 50) -> dict:
    """The lessons, as embedded in the explorer's JSON under ``"lessons"``: why √d_k, the positions, and
    attention as a soft hash table (:func:`qkv.viz.hashtable.soft_hash_table`)."""
    return {
        "scaling": scaling_data(),
        "positions": positions_data(d_model, n_positions),
        "hash_table": soft_hash_table().to_dict(),
    }
