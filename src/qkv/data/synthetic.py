"""The built-in demo task: dates written in words -> ISO dates. Needs no download.

    "tuesday the 3rd of may 2011"                    -> "2011-05-03"
    "the twenty-first of march nineteen ninety-four" -> "1994-03-21"
    "march 21 , 1994"                                -> "1994-03-21"

A small translation task on which a tiny Transformer trains in minutes on a CPU, and whose cross-attention
(§3.2.3, "encoder-decoder attention") is easy to read: each target digit should attend to the source words
that name it. Because English writes dates day-month-year or month-day-year while ISO 8601 is year-month-day,
the alignment is a visible permutation, not a diagonal.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

FIRST_DATE, LAST_DATE = dt.date(1900, 1, 1), dt.date(2099, 12, 31)

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
MONTH_ABBREVIATIONS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sept", "oct", "nov", "dec")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_ONES = ("zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
                 "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
                 "sixteenth", "seventeenth", "eighteenth", "nineteenth")
_ORDINAL_TENS = ("", "", "twentieth", "thirtieth")

# Source templates: (word order, template). {d} a day as a number or ordinal, {o} an ordinal day, {m} a month,
# {y} a year. A weekday may be put in front of any of them.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("dmy", "{d} {m} {y}"),
    ("dmy", "the {o} of {m} {y}"),
    ("dmy", "the {o} of {m} , {y}"),
    ("dmy", "{o} of {m} {y}"),
    ("mdy", "{m} {d} , {y}"),
    ("mdy", "{m} {d} {y}"),
    ("mdy", "{m} the {o} , {y}"),
    ("ymd", "{y} , {m} {d}"),
)


def number_words(n: int) -> str:
    """``0 <= n < 100`` in words: ``21 -> "twenty-one"``."""
    if not 0 <= n < 100:
        raise ValueError(f"number_words handles 0..99, got {n}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def ordinal_words(n: int) -> str:
    """``1 <= n <= 31`` as an ordinal in words: ``21 -> "twenty-first"``."""
    if not 1 <= n <= 31:
        raise ValueError(f"ordinal_words handles days 1..31, got {n}")
    if n < 20:
        return _ORDINAL_ONES[n]
    tens, ones = divmod(n, 10)
    return _ORDINAL_TENS[tens] if not ones else f"{_TENS[tens]}-{_ORDINAL_ONES[ones]}"


def ordinal_digits(n: int) -> str:
    """``n`` with its English ordinal suffix: ``1 -> "1st"``, ``12 -> "12th"``, ``23 -> "23rd"``."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def year_words(year: int, rng: random.Random) -> str:
    """A year in words, in one of the ways English says it (1900-2099).

    ``1994 -> "nineteen ninety-four"``, ``1905 -> "nineteen oh five"``, ``1900 -> "nineteen hundred"``,
    ``2011 -> "two thousand eleven"`` or ``"twenty eleven"``, ``2005 -> "two thousand five"`` or
    ``"two thousand and five"``.
    """
    if not FIRST_DATE.year <= year <= LAST_DATE.year:
        raise ValueError(f"year_words handles {FIRST_DATE.year}..{LAST_DATE.year}, got {year}")
    century, rest = divmod(year, 100)
    paired = f"{number_words(century)} " + (
        "hundred" if rest == 0 else f"oh {_ONES[rest]}" if rest < 10 else number_words(rest)
    )
    if century == 19:
        return paired
    thousands = "two thousand" + ("" if rest == 0 else rng.choice((" ", " and ")) + number_words(rest))
    if rest < 10:
        return thousands  # "twenty oh five" is rare
    return rng.choice((thousands, paired))


def render_date(date: dt.date, rng: random.Random) -> tuple[str, str]:
    """Write ``date`` in words in a randomly chosen style. Returns ``(text, word_order)``.

    ``word_order`` is ``"dmy"``, ``"mdy"`` or ``"ymd"``, the order in which the source names day (d), month
    (m) and year (y). Each part's form is drawn independently: day ``3`` / ``3rd`` / ``third``, month ``may``
    / ``sept``, year ``2011`` / ``two thousand eleven`` / ``twenty eleven``, and an optional weekday.
    """
    order, template = rng.choices(TEMPLATES, weights=(3, 3, 2, 2, 3, 2, 2, 1))[0]
    ordinal = rng.choice((ordinal_digits(date.day), ordinal_words(date.day)))
    day = rng.choice((str(date.day), ordinal, ordinal))
    month = MONTHS[date.month - 1] if rng.random() < 0.8 else MONTH_ABBREVIATIONS[date.month - 1]
    year = str(date.year) if rng.random() < 0.5 else year_words(date.year, rng)
    text = template.format(d=day, o=ordinal, m=month, y=year)
    if rng.random() < 0.25:
        weekday = WEEKDAYS[date.weekday()]
        text = f"{weekday} {text}" if text.startswith("the ") else f"{weekday} , {text}"
    return text, order


def random_date(rng: random.Random) -> dt.date:
    """A uniformly random calendar date between 1900-01-01 and 2099-12-31."""
    return FIRST_DATE + dt.timedelta(days=rng.randrange((LAST_DATE - FIRST_DATE).days + 1))


def date_examples(n: int, seed: int = 0) -> list[tuple[dt.date, str, str]]:
    """Like :func:`date_pairs`, keeping each example's date and word order: ``(date, source, order)``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    seen: set[str] = set()
    examples = []
    attempts, max_attempts = 0, 20 * n + 1000
    while len(examples) < n:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(f"could not draw {n} distinct date sentences (got {len(examples)})")
        date = random_date(rng)
        text, order = render_date(date, rng)
        if text not in seen:
            seen.add(text)
            examples.append((date, text, order))
    return examples


def date_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (date in words, ISO date) pairs, the built-in demo translation task.

    Design:

    * **Targets** are ISO 8601 dates, ``YYYY-MM-DD``, of calendar dates drawn uniformly from 1900-01-01 to
      2099-12-31 (leap days included, every date valid).
    * **Sources** write the same date the ways English does, each part's form drawn independently:
      word orders day-month-year (``"the 21st of march 1994"``), month-day-year (``"march 21 , 1994"``) and,
      rarely, year-month-day (``"1994 , march 21"``); days as ``21``, ``21st`` or ``twenty-first``; months
      in full or abbreviated (``sept``); years as digits or in words (``"nineteen ninety-four"``,
      ``"two thousand and five"``, ``"twenty eleven"``); and sometimes the weekday (``"tuesday the 3rd of
      may 2011"``), which is always the right one. Punctuation is tokenized apart (``" , "``).
    * **Why**: the model has to *reorder* (ISO puts the year first, English rarely does), so the
      cross-attention map is a permutation that changes with the style, not a diagonal; and it has to
      convert words to digits (``"twenty-first"`` -> ``2`` ``1``, ``"oh five"`` -> ``0`` ``5``). With about
      73,000 dates and dozens of styles per date, a test sentence is new to the model: it must learn the
      rules, not memorise.
    * **Deterministic**: the same ``(n, seed)`` always gives the same list (Python's ``random.Random``), and
      the first ``k`` pairs of ``date_pairs(n, seed)`` are ``date_pairs(k, seed)``.
    * **Distinct**: no source sentence occurs twice, so any split of the list (see
      :func:`write_demo_corpus`) shares no source sentence between its parts.

    Args:
        n: number of pairs.
        seed: random seed.

    Returns:
        ``[(source, target), ...]``,
        e.g. ``("the twenty-first of march nineteen ninety-four", "1994-03-21")``.

    Example:
        >>> pairs = date_pairs(3, seed=0)
        >>> len(pairs), all(len(iso) == 10 for _, iso in pairs)
        (3, True)
    """
    return [(text, date.isoformat()) for date, text, _ in date_examples(n, seed)]


def write_demo_corpus(
    folder: str | Path,
    n_train: int = 20_000,
    n_val: int = 500,
    n_test: int = 500,
    seed: int = 0,
) -> Path:
    """Write the dates task as a parallel corpus: ``{train,val,test}.{words,iso}``, one sentence a line.

    The three splits are consecutive slices of one :func:`date_pairs` list, so no source sentence is in two
    splits. Read it back with ``qkv.data.multi30k.find_splits(folder, "words", "iso")``.

    Args:
        folder: where to write (created if needed; existing files of these names are overwritten).
        n_train, n_val, n_test: pairs per split.
        seed: random seed; the same seed writes the same files.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = date_pairs(n_train + n_val + n_test, seed)
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val),
              "test": (n_train + n_val, n_train + n_val + n_test)}
    for split, (start, stop) in bounds.items():
        chunk = pairs[start:stop]
        for side, lang in enumerate(("words", "iso")):
            text = "".join(pair[side] + "\n" for pair in chunk)
            (folder / f"{split}.{lang}").write_text(text, encoding="utf-8")
    return folder
