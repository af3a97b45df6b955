"""Attention as a soft hash table (qkv.viz.hashtable, `qkv explain --hash-table`)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from qkv.cli import main
from qkv.viz.hashtable import format_hash_table, soft_hash_table


def test_soft_lookup_is_eq1_on_the_table():
    table = soft_hash_table(temperatures=(1.0, 0.5))
    k, v = (torch.tensor(x, dtype=torch.float64) for x in (table.key_vectors, table.values))
    for lookup in table.queries:
        q = torch.tensor(lookup.query, dtype=torch.float64)
        for row in lookup.sweep[:-1]:
            w = torch.softmax(k @ q / (row.temperature * math.sqrt(table.d_k)), dim=-1)
            assert torch.allclose(torch.tensor(row.weights, dtype=torch.float64), w, atol=1e-12)
            assert torch.allclose(torch.tensor(row.output, dtype=torch.float64), w @ v, atol=1e-12)
            assert sum(row.weights) == pytest.approx(1.0)


def test_sharpening_turns_the_soft_lookup_into_the_exact_one():
    dog = soft_hash_table().queries[0]
    assert dog.exact_key == "dog" and dog.exact_value == [2.0]
    errors = [r.error for r in dog.sweep]
    assert errors[0] > 0.1  # τ large: a blend of all values, far from the exact answer
    assert all(a >= b for a, b in itertools.pairwise(errors))  # τ decreasing: the error only shrinks
    assert errors[-2] < 1e-6 and dog.sweep[-1].hard and errors[-1] == 0.0
    assert dog.sweep[-1].weights == [0.0, 1.0, 0.0, 0.0]


def test_a_query_equal_to_no_key_gets_a_blend_tending_to_the_nearest_key():
    kitten = soft_hash_table().queries[1]
    assert kitten.exact_key is None and kitten.exact_value is None
    assert kitten.nearest_key == "cat" and kitten.target == [1.0]
    first = kitten.sweep[0]
    assert min(first.weights) > 0.2 and 1.0 < first.output[0] < 4.0  # every value contributes
    assert kitten.sweep[-2].error < 1e-3 and kitten.sweep[-1].output == [1.0]


def test_custom_table_and_bad_input():
    table = soft_hash_table({"a": [1.0, 0.0], "b": [0.0, 1.0]}, [[5.0, 6.0], [7.0, 8.0]], {"b": [0.0, 1.0]}, (1.0,))
    assert table.queries[0].exact_value == [7.0, 8.0] and len(table.queries[0].sweep) == 2
    with pytest.raises(ValueError, match="one vector per key"):
        soft_hash_table({"a": [1.0, 0.0]}, [[1.0], [2.0]], {})
    with pytest.raises(ValueError, match="d_k = 2"):
        soft_hash_table({"a": [1.0, 0.0]}, [[1.0]], {"q": [1.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="temperatures must be positive"):
        soft_hash_table(temperatures=(1.0, 0.0))


def test_export_is_json_and_text_names_every_part():
    table = soft_hash_table()
    data = json.loads(json.dumps(table.to_dict()))
    assert data["keys"] == ["cat", "dog", "car", "bus"] and len(data["queries"][0]["sweep"]) == 9
    text = format_hash_table(table)
    assert "KeyError" in text and "equals key 'dog'" in text and "hard" in text and "-0.000" not in text


def test_cli_hash_table(capsys):
    assert main(["explain", "--hash-table"]) == 0
    out = capsys.readouterr().out
    assert "soft hash table" in out and "query 'kitten'" in out and "nearest key" in out
    assert main(["explain", "a sentence", "--hash-table"]) == 2
    assert "--hash-table takes no sentence" in capsys.readouterr().err
    assert main(["explain"]) == 2
    assert "give a sentence" in capsys.readouterr().err
