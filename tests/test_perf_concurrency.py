"""benchmark/perf/concurrency.py: K cells one at a time vs at once, same metrics both ways."""

from __future__ import annotations

from pathlib import Path

from benchmark.perf import concurrency


def test_rounds_run_and_agree(tmp_path: Path, tiny_root: Path) -> None:
    out = tmp_path / "concurrency.md"
    overrides = ["method=baseline", "dataset=synthetic_tiny", "protocol=tiny",
                 f"dataset.root={tiny_root}", "protocol.epochs=1"]  # fmt: skip
    code = concurrency.main(["--cells", "2", "--runs", str(tmp_path / "runs"), "--out", str(out),
                             "--", *overrides])  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert "| one at a time (`--jobs 1`) |" in text and "| all at once (`--jobs 2`) |" in text
    assert "Same metrics per seed in both rounds: yes." in text
    for jobs in (1, 2):  # every cell of both rounds ran, each in its own directory
        results = sorted(
            (tmp_path / "runs" / f"concurrency-jobs{jobs}").glob("*/*/seed*/results.json")
        )
        assert [p.parent.name for p in results] == ["seed1", "seed2"]
