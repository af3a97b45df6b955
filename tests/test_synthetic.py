"""The built-in demo task (qkv.data.synthetic): dates in words -> ISO dates.

The sources are checked with a parser written here, independently of the generator: it reads the day, month,
year (and weekday, when given) back from the words and must find the date of the ISO target.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest

from qkv.data import (
    SubwordTokenizer,
    date_examples,
    date_pairs,
    find_splits,
    read_lines,
    read_parallel,
    write_demo_corpus,
)
from qkv.data.synthetic import number_words, ordinal_digits, ordinal_words, year_words


def table(words: str, start: int = 0, step: int = 1) -> dict[str, int]:
    """'a b c' -> {'a': start, 'b': start + step, ...}."""
    return {word: start + step * i for i, word in enumerate(words.split())}


MONTHS = table("january february march april may june july august september october november december", 1)
MONTHS |= table("jan feb mar apr may jun jul aug sept oct nov dec", 1)
WEEKDAYS = table("monday tuesday wednesday thursday friday saturday sunday")
UNITS = table("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
              "sixteen seventeen eighteen nineteen")
TENS = table("twenty thirty forty fifty sixty seventy eighty ninety", 20, 10)
ORDINALS = {"first": 1, "second": 2, "third": 3, "fifth": 5, "eighth": 8, "ninth": 9, "twelfth": 12,
            "twentieth": 20, "thirtieth": 30}


def words_to_number(word: str) -> int:
    """'ninety-four' -> 94, 'eleven' -> 11."""
    if "-" in word:
        tens, units = word.split("-")
        return TENS[tens] + UNITS[units]
    return UNITS[word] if word in UNITS else TENS[word]


def ordinal_to_number(word: str) -> int | None:
    """'21st' / 'twenty-first' / 'fourth' -> the day, or None when ``word`` is no ordinal."""
    if m := re.fullmatch(r"(\d{1,2})(st|nd|rd|th)", word):
        return int(m.group(1))
    head, _, last = word.rpartition("-")
    value = ORDINALS.get(last) or (UNITS.get(last.removesuffix("th")) if last.endswith("th") else None)
    if value is None:
        return None
    return value + (TENS[head] if head else 0)


def parse_year(words: list[str]) -> int:
    if len(words) == 1:
        assert re.fullmatch(r"\d{4}", words[0]), words
        return int(words[0])
    if words[:2] == ["two", "thousand"]:
        rest = [w for w in words[2:] if w != "and"]
        return 2000 + (words_to_number(rest[0]) if rest else 0)
    century = words_to_number(words[0])
    if words[1:] == ["hundred"]:
        return 100 * century
    if words[1] == "oh":
        return 100 * century + UNITS[words[2]]
    assert len(words) == 2, words
    return 100 * century + words_to_number(words[1])


def parse_date(text: str) -> tuple[dt.date, str, int | None]:
    """Read a source sentence back: ``(date, word order such as "dmy", weekday or None)``."""
    day = month = weekday = None
    year_words_: list[str] = []
    order = ""
    for word in text.split():
        if word in {"the", "of", ","}:
            continue
        if word in WEEKDAYS:
            weekday = WEEKDAYS[word]
        elif word in MONTHS and month is None:
            month, order = MONTHS[word], order + "m"
        elif day is None and (ordinal_to_number(word) or re.fullmatch(r"\d{1,2}", word)):
            day, order = ordinal_to_number(word) or int(word), order + "d"
        else:
            year_words_.append(word)
            order += "" if "y" in order else "y"
    return dt.date(parse_year(year_words_), month, day), order, weekday


def test_number_helpers():
    assert [number_words(n) for n in (0, 13, 20, 94)] == ["zero", "thirteen", "twenty", "ninety-four"]
    assert [ordinal_words(n) for n in (1, 12, 20, 21, 30, 31)] == [
        "first", "twelfth", "twentieth", "twenty-first", "thirtieth", "thirty-first"]
    assert [ordinal_digits(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    import random

    rng = random.Random(0)
    assert year_words(1994, rng) == "nineteen ninety-four"
    assert year_words(1905, rng) == "nineteen oh five"
    assert year_words(1900, rng) == "nineteen hundred"
    assert {year_words(2011, rng) for _ in range(40)} >= {"two thousand eleven", "twenty eleven"}
    for bad in (number_words, ordinal_words):
        with pytest.raises(ValueError):
            bad(100)


def test_parser_reads_the_examples_of_the_issue():
    assert parse_date("the twenty-first of march nineteen ninety-four")[:2] == (dt.date(1994, 3, 21), "dmy")
    assert parse_date("march 21 , 1994")[:2] == (dt.date(1994, 3, 21), "mdy")
    assert parse_date("tuesday the 3rd of may 2011") == (dt.date(2011, 5, 3), "dmy", 1)
    assert parse_date("may third two thousand eleven")[:2] == (dt.date(2011, 5, 3), "mdy")


def test_deterministic_and_seeded():
    assert date_pairs(300, seed=7) == date_pairs(300, seed=7)
    assert date_pairs(100, seed=7) == date_pairs(300, seed=7)[:100]
    assert date_pairs(300, seed=7) != date_pairs(300, seed=8)
    assert date_pairs(0) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        date_pairs(-1)


def test_every_source_names_its_target_date():
    examples = date_examples(3000, seed=1)
    assert [(text, date.isoformat()) for date, text, _ in examples] == date_pairs(3000, seed=1)
    n_weekdays = 0
    for date, text, order in examples:
        iso = date.isoformat()
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso)
        assert dt.date.fromisoformat(iso) == date and 1900 <= date.year <= 2099
        parsed, parsed_order, weekday = parse_date(text)
        assert parsed == date, text
        assert parsed_order == order, text
        if weekday is not None:
            n_weekdays += 1
            assert weekday == date.weekday(), text
    assert n_weekdays > 300


def test_varied_orders_styles_and_dates():
    examples = date_examples(3000, seed=2)
    orders = Counter(order for _, _, order in examples)
    assert set(orders) == {"dmy", "mdy", "ymd"}
    assert orders["dmy"] > 900 and orders["mdy"] > 900 and orders["ymd"] > 100  # mostly not ISO order
    texts = [text for _, text, _ in examples]
    years_in_digits = sum(bool(re.search(r"\b(19|20)\d\d\b", t)) for t in texts)
    assert 900 < years_in_digits < 2100  # the others are in words
    assert sum(bool(re.search(r"\b\d{1,2}(st|nd|rd|th)\b", t)) for t in texts) > 300
    assert sum("sept" in t.split() or "jan" in t.split() for t in texts) > 20
    dates = [date for date, _, _ in examples]
    assert len(set(dates)) > 2900  # dates spread over two centuries, hardly any repeat
    assert {d.year // 100 for d in dates} == {19, 20} and len({d.month for d in dates}) == 12
    assert any(date.month == 2 and date.day == 29 for date, _, _ in date_examples(20000, seed=3))  # leap days


def test_write_demo_corpus_disjoint_splits_readable_by_find_splits(tmp_path):
    folder = write_demo_corpus(tmp_path / "dates", n_train=2000, n_val=200, n_test=300, seed=5)
    assert folder == tmp_path / "dates"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{split}.{lang}" for split in ("test", "train", "val") for lang in ("iso", "words")]
    splits = find_splits(folder, "words", "iso")
    data = {split: read_parallel(*paths) for split, paths in splits.items()}
    assert {split: len(d) for split, d in data.items()} == {"train": 2000, "val": 200, "test": 300}
    sources = {split: set(d.src) for split, d in data.items()}
    assert all(len(sources[s]) == len(data[s]) for s in sources)  # no duplicate within a split
    assert not sources["train"] & sources["val"] and not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    everything = [pair for split in ("train", "val", "test") for pair in data[split]]
    assert everything == date_pairs(2500, seed=5)
    assert read_lines(folder / "test.iso")[0] == data["test"].tgt[0]
    # rewriting with the same seed gives the same bytes
    before = (folder / "val.words").read_bytes()
    write_demo_corpus(folder, n_train=2000, n_val=200, n_test=300, seed=5)
    assert (folder / "val.words").read_bytes() == before


def test_word_tokenizer_has_a_closed_vocabulary_on_dates(tmp_path):
    train, test = date_pairs(3000, seed=4)[:2500], date_pairs(3000, seed=4)[2500:]
    src = SubwordTokenizer.train([s for s, _ in train], vocab_size=1000, model="word")
    tgt = SubwordTokenizer.train([t for _, t in train], vocab_size=1000, model="word")
    assert tgt.vocab_size <= 4 + 12  # specials, ten digits, "-" and the "▁" before a date
    for s, t in test:
        assert src.UNK not in src.encode(s) and src.decode(src.encode(s)) == s
        assert tgt.decode(tgt.encode(t)) == t
    assert tgt.tokens("1994-03-21") == ["▁", "1", "9", "9", "4", "-", "0", "3", "-", "2", "1"]
