"""The committed benchmarks run, and the grid-cost table is the arithmetic it claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.perf.grid_cost import is_siamese, suite_cost

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("method", "siamese"),
    [("cnenet", True), ("cnenet_triplet", True), ("bl_nmm_no_sd", True), ("bl_nmm_no_sa", False),
     ("baseline", False), ("proxy_anchor", False), ("dam_triplet", False)],
)  # fmt: skip
def test_siamese_methods_are_told_apart(method: str, siamese: bool) -> None:
    assert is_siamese(method) is siamese


def test_grid_cost_is_epochs_times_images_over_throughput() -> None:
    rows = [
        {"method": "baseline", "batch": 32, "loop_images_per_second": 400.0},
        {"method": "cnenet", "batch": 32, "loop_images_per_second": 200.0},
        {"method": "proxy_anchor", "batch": 32, "loop_images_per_second": 500.0},
        {"method": "baseline", "batch": 128, "loop_images_per_second": 9999.0},
    ]
    table, total = suite_cost("paper", rows, batch=32)
    by_method = {row["method"]: row for row in table}
    images = 90 * (5864 + 8054 + 5000)  # paper protocol epochs x training images of the 3 sets
    assert by_method["baseline"]["hours"] == pytest.approx(3 * images / 400 / 3600)
    assert by_method["cnenet_triplet"]["figure_of"] == "cnenet"
    assert by_method["cnenet_triplet"]["hours"] == pytest.approx(3 * images / 200 / 3600)
    assert by_method["proxy_anchor"]["figure_of"] == "proxy_anchor"  # measured: its own figure
    assert by_method["arcface"]["figure_of"] == "baseline"
    assert all(row["cells"] == 9 for row in table)
    assert total == pytest.approx(sum(row["hours"] for row in table))
    with pytest.raises(ValueError, match="needs baseline and cnenet"):
        suite_cost("paper", rows[:1], batch=32)


def test_throughput_benchmark_runs_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    command = [
        sys.executable, "-m", "benchmark.perf.bench_throughput", "--methods", "baseline",
        "cnenet", "--batches", "8", "--steps", "1", "--warmup", "1", "--rounds", "1",
        "--protocol", "tiny", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["method"] for row in report["rows"]] == ["baseline", "cnenet"]
    for row in report["rows"]:
        for key in ("bare", "harness", "loop", "loader"):
            assert row[f"{key}_images_per_second"] > 0
        assert row["peak_mb"] >= 0  # NaN (no VmHWM) or a negative increase fails
        assert row["loop_vs_bare"] == pytest.approx(
            row["loop_images_per_second"] / row["bare_images_per_second"]
        )
    assert report["settings"]["precision"] == "fp32"  # CPU: autocast recorded as off
    table = subprocess.run(
        [sys.executable, "-m", "benchmark.perf.grid_cost", str(out), "--batch", "8",
         "--suite", "ablation_cub"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr[-3000:]
    assert "| **total** | | | 30 |" in table.stdout
