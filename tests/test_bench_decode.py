"""bench/decode.py --isolate: each decoder timed in a process of its own gives the same table as one process."""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_isolated_decoders_report_the_outputs_of_the_shared_process(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    import decode

    argv = ["--preset", "tiny", "--vocab", "40", "--batch", "3", "--src-len", "5", "--max-len-b", "4", "--n", "1",
            "--no-hf", "--cache-only", "--threads", "1"]  # fmt: skip

    def rows(extra: list[str]) -> dict[str, list[str]]:
        assert decode.main([*argv, *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        table = lines[next(i for i, line in enumerate(lines) if line.startswith("decoder")) + 1 :]
        return {line[:32].strip(): line[32:].split() for line in table if line.startswith("qkv")}

    shared, isolated = rows([]), rows(["--isolate"])
    assert set(shared) == set(isolated) == {"qkv greedy", "qkv beam 5"}
    for name in shared:
        assert isolated[name][2] == shared[name][2]  # the same number of tokens: the same outputs
        assert isolated[name][-1] == "3/3"  # beam compared with itself, greedy too
        assert float(isolated[name][0]) > 0  # sent/s, from the child's timing


def test_early_stopping_adds_the_rows_of_ctranslate2s_stopping_rule(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    import decode

    argv = ["--preset", "tiny", "--vocab", "40", "--batch", "3", "--src-len", "5", "--max-len-b", "4", "--n", "1",
            "--no-hf", "--cache-only", "--threads", "1", "--early-stopping"]  # fmt: skip
    assert decode.main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("decoder")) + 1 :]
    rows = [line[:32].strip() for line in table if line.startswith("qkv")]
    assert rows[:3] == ["qkv greedy", "qkv beam 5", "qkv beam 5 early"]
    assert "qkv beam 5 early vs qkv beam 5:" in out
