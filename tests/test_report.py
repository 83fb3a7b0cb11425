"""The comparison report on fake run directories whose numbers the tests choose."""

from __future__ import annotations

import copy
import csv
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.report import Expected, ResultsError, load_results, write_report
from benchmark.report.__main__ import main
from benchmark.report.stats import hits_at_k, summarize
from tests.reference_bootstrap import paired_bootstrap

REPO = Path(__file__).resolve().parent.parent
REFERENCE_CSV = """table,method,arch,dataset,R1,R2,R4,R8,source
T1,BL,R50,CUB,66.3,,,,CNENet Table 1
T1,BL+NMM,R50,CUB,71.2,,,,CNENet Table 1
T1,BL+NMM+NEM,R50,CUB,74.5,,,,CNENet Table 1
T3,l=4,R50,CUB,74.5,83.1,89.2,93.8,CNENet Table 3
T2,CNENet,R50,CUB,74.5,83.1,89.2,93.8,CNENet Table 2
T2,DAM,In3,CUB,72.3,81.2,87.8,92.7,CNENet Table 2
"""
PROTOCOL = {
    "name": "embedded",
    "backbone": {"name": "resnet50", "pretrained": True},
    "image": {"resize": 256, "crop": 224},
    "optimizer": {"name": "sgd", "lr": 0.001},
    "epochs": 12,
    "batch_size": 32,
    "precision": "fp32",
}


def config_for(method: str, dataset: str, seed: int, root: str) -> dict:
    return {
        "method": {"name": method, "builder": method, "pooling": "avg"},
        "dataset": {"name": dataset, "root": root},
        "protocol": copy.deepcopy(PROTOCOL),
        "seed": seed,
        "suite": "fake",
        "run_dir": f"runs/fake/{method}/{dataset}/seed{seed}",
        "stage": "evaluate",
    }


def neighbors_with_hits(labels: np.ndarray, hits: np.ndarray, k: int = 8) -> np.ndarray:
    """(N, k) neighbours whose first entry shares the query's label exactly where ``hits``; the
    other k - 1 entries always have another label (so hit@1 == hits, independent of the rest)."""
    n = len(labels)
    out = np.empty((n, k), dtype=np.int32)
    for i in range(n):
        same = [j for j in range(n) if j != i and labels[j] == labels[i]]
        other = [j for j in range(n) if labels[j] != labels[i]]
        first = same[0] if hits[i] else other[0]
        out[i] = [first, *other[1:k]]
    return out


def write_run(
    runs: Path,
    method: str,
    dataset: str,
    seed: int,
    recalls: tuple[float, float, float, float],
    *,
    config: dict | None = None,
    hits: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    root: str = "data/none",
    started: str = "2025-01-02T03:04:05+00:00",
    health: dict | None = None,
    cpu_isa: str | None = "avx2",
) -> Path:
    """A run directory as benchmark/train.py writes it, with the numbers the test chooses
    (``cpu_isa=None``: a run from before the instruction-set setting was recorded)."""
    run_dir = runs / method / dataset / f"seed{seed}"
    run_dir.mkdir(parents=True)
    if hits is not None:
        np.save(run_dir / "neighbors.npy", neighbors_with_hits(labels, hits))
        np.save(run_dir / "test_labels.npy", labels.astype(np.int64))
    if embeddings is not None:
        np.save(run_dir / "test_embeddings.npy", embeddings.astype(np.float32))
    config = config or config_for(method, dataset, seed, root)
    results = {
        "schema": 1,
        "suite": "fake",
        "method": method,
        "builder": method,
        "dataset": dataset,
        "seed": seed,
        "metrics": {
            "recall@1": recalls[0],
            "recall@2": recalls[1],
            "recall@4": recalls[2],
            "recall@8": recalls[3],
            "map@r": recalls[0] / 2,
            "r_precision": recalls[0] / 1.5,
        },
        "cost": {
            "train_seconds": 100.0 + seed,
            "eval_seconds": 5.0,
            "wall_seconds": 110.0,
            "images_per_second": 250.0,
            "peak_memory_mb": 1024.0,
            "parameters": 25_557_032,
            "descriptor_dim": 2048,
        },
        "param_groups": [
            {
                "name": "backbone",
                "lr": 0.001,
                "lr_multiplier": 1.0,
                "weight_decay": 1e-4,
                "num_params": 23_500_000,
            },
            {
                "name": "new",
                "lr": 0.01,
                "lr_multiplier": 10.0,
                "weight_decay": 1e-4,
                "num_params": 204_900,
            },
        ],
        **({"health": health} if health is not None else {}),
        "declared": {"pooling": "avg", "embedding": "avg-pooled backbone feature"},
        "capabilities": {  # what CNENet-like methods declare
            "siamese": method.startswith("cnenet"),
            "nuance_maps": method.startswith("cnenet"),
            "stats": [],
        },
        "provenance": {
            "command": f"python benchmark/run.py method={method} dataset={dataset} seed={seed}",
            "git_commit": "0123456789abcdef",
            "git_dirty": False,
            "manifest_sha256": "ab" * 32,
            "libraries": {"torch": "2.14.1"},
            "device": "cpu: test",
            "python": "3.11",
            "started": started,
            **({"cpu": {"isa": {"setting": cpu_isa}}} if cpu_isa else {}),
        },
        "config": config,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "train.log").write_text("epoch 1: ...\n")
    history = "epoch,ce,sd,total,lr,images_per_second,seconds\n"
    history += "".join(
        f"{e},{2.0 / e + seed * 0.01},{0.5 / e},{2.5 / e},0.01,250,1.0\n" for e in (1, 2, 3)
    )
    (run_dir / "history.csv").write_text(history)
    return run_dir


def write_reference(tmp_path: Path) -> Path:
    path = tmp_path / "paper_results.csv"
    path.write_text(REFERENCE_CSV)
    return path


def table_rows(markdown: str, first_cell: str | None) -> list[list[str]]:
    """The cells of every Markdown table row whose first cell is ``first_cell`` (None: all)."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| ") and not re.match(r"\| :?-", line):  # not the alignment row
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if cells and (first_cell is None or cells[0] == first_cell):
                rows.append(cells)
    return rows


def named_rows(markdown: str, caption: str) -> dict[str, dict[str, str]]:
    """The first table after ``caption``: first cell -> {column name: cell}."""
    lines = markdown[markdown.index(caption) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    table = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        table.append(line)
    header, *rows = table_rows("\n".join(table), None)
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def section(markdown: str, start: str, end: str) -> str:
    return markdown[markdown.index(start) : markdown.index(end, markdown.index(start))]


# ----- numbers -------------------------------------------------------------------------------


SEED_R1 = {1: 70.0, 2: 72.5, 3: 71.0}


@pytest.fixture
def simple_suite(tmp_path: Path) -> tuple[Path, Path]:
    runs = tmp_path / "runs" / "fake"
    for seed, r1 in SEED_R1.items():
        write_run(runs, "cnenet", "cub", seed, (r1, r1 + 8, r1 + 14, r1 + 19))
    for seed in (1, 2):
        write_run(runs, "baseline", "cub", seed, (60.0 + seed, 70.0, 80.0, 90.0))
    write_run(runs, "dam_proxy", "cub", 1, (65.0, 75.0, 85.0, 99.0))
    return runs, write_reference(tmp_path)


def test_mean_std_ci_and_paper_numbers_are_shown_exactly(simple_suite, tmp_path: Path) -> None:
    runs, reference = simple_suite
    out = tmp_path / "reports"
    write_report(runs, out, reference, resamples=200)
    markdown = (out / "results.md").read_text()
    values = list(SEED_R1.values())
    mean, std = statistics.mean(values), statistics.stdev(values)  # (70 + 72.5 + 71) / 3 = 71.1667
    half = {2: 12.706205, 3: 4.302653}[3] * std / math.sqrt(3)  # t(0.975, 2) from tables
    cnenet = named_rows(markdown, "**Recall@K (%) on cub")["`cnenet`"]
    assert cnenet["n"] == "3" and cnenet["R@1"] == f"**{mean:.1f} ± {std:.1f}**"  # best R@1
    assert cnenet["Paper row"] == "CNENet (Table 2)"  # the paper's numbers are columns
    assert [cnenet[f"Paper R@{k}"] for k in (1, 2, 4, 8)] == ["74.5", "83.1", "89.2", "93.8"]
    assert cnenet["Δ R@1"] == f"{mean - 74.5:+.1f}".replace("-", "−")
    stats_row = next(r for r in table_rows(markdown, "`cnenet`") if len(r) == 8)  # statistics
    assert stats_row[3] == f"[{mean - half:.1f}, {mean + half:.1f}]"
    # tidy CSV: exact values, independent of the display rounding
    with open(out / "results.csv") as handle:
        records = {(r["method"], r["dataset"], r["metric"]): r for r in csv.DictReader(handle)}
    row = records[("cnenet", "cub", "recall@1")]
    assert float(row["mean"]) == pytest.approx(mean, abs=1e-4)
    assert float(row["std"]) == pytest.approx(std, abs=1e-4)
    assert float(row["ci95"]) == pytest.approx(half, abs=1e-4)
    assert int(row["n"]) == 3 and float(row["paper"]) == 74.5
    dam = records[("dam_proxy", "cub", "recall@1")]
    assert (
        dam["n"] == "1" and dam["std"] == "" and dam["ci95"] == "" and float(dam["paper"]) == 72.3
    )
    assert "n/a (n = 1)" in markdown  # the CI of a single seed


def test_best_per_column_is_bold_and_arch_mismatch_is_marked(simple_suite, tmp_path: Path) -> None:
    runs, reference = simple_suite
    write_report(runs, tmp_path / "out", reference, resamples=200)
    markdown = (tmp_path / "out" / "results.md").read_text()
    comparison = section(markdown, "Recall@K (%) on cub", "## Statistics")
    rows = named_rows(comparison, "Recall@K")
    bold = {
        name: [i for i, k in enumerate((1, 2, 4, 8)) if rows[name][f"R@{k}"].startswith("**")]
        for name in ("`cnenet`", "`baseline`", "`dam_proxy`")
    }
    # R@1, R@2, R@4: cnenet's means (71.2, 79.2, 85.2) win; R@8: dam_proxy's 99.0
    assert bold == {"`cnenet`": [0, 1, 2], "`baseline`": [], "`dam_proxy`": [3]}
    dam = rows["`dam_proxy`"]
    assert dam["Paper row"] == "DAM (Table 2)" and dam["Paper arch"] == "In3†"
    assert "different backbone" in comparison


def test_missing_cells_are_named_not_shown_as_empty_rows(simple_suite, tmp_path: Path) -> None:
    runs, reference = simple_suite
    expected = Expected(("baseline", "cnenet", "proxynca_pp"), ("cub",), (1, 2, 3))
    write_report(runs, tmp_path / "out", reference, expected, resamples=200)
    markdown = (tmp_path / "out" / "results.md").read_text()
    comparison = named_rows(markdown, "**Recall@K (%) on cub")
    assert "`proxynca_pp`" not in comparison and "Not run: `proxynca_pp`." in markdown
    assert comparison["`baseline`"]["n"] == "2/3"  # seed 3 missing, never filled in
    assert "4 of 9 expected runs have no results file" in markdown
    missing = table_rows(markdown[markdown.index("Expected runs without") :], None)
    assert missing[1:] == [["`baseline`", "cub", "3"], ["`proxynca_pp`", "cub", "1, 2, 3"]]
    ablation = (tmp_path / "out" / "ablations_fake.md").read_text()
    assert not table_rows(ablation, "`bl_nmm`")  # not run: named, no empty row
    assert "`bl_nmm`" in ablation.split("Not run in this suite:")[1]
    table3 = named_rows(ablation, "Table 3 analogue")["`cnenet`"]
    assert table3["Paper row"] == "l=4 (Table 3)"
    assert [table3[f"Paper R@{k}"] for k in (1, 2, 4, 8)] == ["74.5", "83.1", "89.2", "93.8"]


def test_ablation_on_generated_data_shows_the_papers_cub_rows_without_delta(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs" / "fake"
    for seed, r1 in ((1, 20.0), (2, 24.0)):
        write_run(runs, "baseline", "synthetic", seed, (r1, 30.0, 40.0, 50.0))
    write_run(runs, "bl_nmm", "synthetic", 1, (18.0, 28.0, 38.0, 48.0))
    write_report(runs, tmp_path / "out", write_reference(tmp_path), None, resamples=200)
    ablation = (tmp_path / "out" / "ablations_fake.md").read_text()
    rows = named_rows(ablation, "Table 1 analogue")
    baseline = rows["`baseline`"]
    assert baseline["n"] == "2" and baseline["R@1"] == "**22.0 ± 2.8**"  # best in bold
    assert baseline["Paper row"] == "BL (Table 1, CUB)" and baseline["Paper R@1"] == "66.3"
    assert "Δ R@1" not in baseline and "Paper R@2" not in baseline  # no Δ across datasets
    assert rows["`bl_nmm`"]["Paper row"] == "BL+NMM (Table 1, CUB)"
    assert rows["`bl_nmm`"]["Paper R@1"] == "71.2"
    assert "The paper has no synthetic numbers" in ablation


def test_protocol_difference_is_flagged_at_the_top(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (1, 2):
        write_run(runs, "baseline", "cub", seed, (60.0, 70.0, 80.0, 90.0))
    odd = config_for("cnenet", "cub", 1, "data/none")
    odd["protocol"]["epochs"] = 30
    write_run(runs, "cnenet", "cub", 1, (70.0, 80.0, 85.0, 95.0), config=odd)
    write_report(runs, tmp_path / "out", None, resamples=200)
    markdown = (tmp_path / "out" / "results.md").read_text()
    first_block = markdown.split("## ")[0]
    assert "WARNING" in first_block and "`protocol.epochs`" in first_block
    assert "30 in `cnenet` (s1)" in first_block and "12 in `baseline` (s1, s2)" in first_block
    html = (tmp_path / "out" / "index.html").read_text()
    assert html.index('class="alert danger"') < html.index("<h2")
    fairness = table_rows(markdown[markdown.index("Differences in the shared protocol") :], None)
    assert fairness[1:3] == [
        ["cub", "`protocol.epochs`", "`12`", "`baseline` (s1, s2)"],
        ["", "", "`30`", "`cnenet` (s1)"],
    ]
    # the run off the common value is marked in the comparison table
    assert list(named_rows(markdown, "**Recall@K (%) on cub")) == ["`baseline`", "`cnenet` ⚠"]


def test_identical_protocols_are_not_flagged(simple_suite, tmp_path: Path) -> None:
    runs, reference = simple_suite
    write_report(runs, tmp_path / "out", reference, resamples=200)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "WARNING" not in markdown and "No differences" in markdown
    # the fairness section shows the learning-rate multiplier applied to each parameter group
    assert "backbone: lr 0.001 (x1), wd 0.0001" in markdown
    assert "new: lr 0.01 (x10), wd 0.0001" in markdown


# ----- statistics ----------------------------------------------------------------------------


def test_summary_matches_the_formula() -> None:
    values = [70.0, 72.5, 71.0, 69.5]
    summary = summarize(values)
    std = math.sqrt(sum((v - 70.75) ** 2 for v in values) / 3)
    assert summary.mean == pytest.approx(70.75) and summary.std == pytest.approx(std)
    assert summary.ci95 == pytest.approx(3.182446 * std / 2, rel=1e-6)  # t(0.975, 3)
    single = summarize([70.0])
    assert single.n == 1 and math.isnan(single.std) and math.isnan(single.ci95)


def test_hits_at_k_against_a_loop() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=30)
    neighbors = np.array(
        [rng.choice([j for j in range(30) if j != i], 8, replace=False) for i in range(30)]
    )
    for k in (1, 2, 4, 8):
        expected = [any(labels[j] == labels[i] for j in neighbors[i, :k]) for i in range(30)]
        assert hits_at_k(neighbors, labels, k).tolist() == expected


def test_paired_bootstrap_strictly_better_and_identical() -> None:
    rng = np.random.default_rng(1)
    baseline = rng.random(200) < 0.5
    better = baseline.copy()
    better[np.flatnonzero(~baseline)[:30]] = True  # 30 more hits, never fewer
    result = paired_bootstrap(better, baseline, resamples=2000, seed=0)
    assert result.difference == pytest.approx(15.0)  # 30 / 200 queries, in points
    assert result.p_value < 0.05 and 0 < result.ci_low < 15.0 < result.ci_high
    same = paired_bootstrap(baseline, baseline, resamples=2000, seed=0)
    assert same.difference == 0 and same.ci_low == 0 and same.ci_high == 0 and same.p_value == 1.0
    again = paired_bootstrap(better, baseline, resamples=2000, seed=0)
    assert again == result  # fixed seed: deterministic


def test_paired_test_in_the_report_uses_the_run_files(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    labels = np.repeat(np.arange(10), 6)  # 60 queries, 10 classes
    base_hits = np.arange(60) % 2 == 0  # 50%
    better = base_hits | (np.arange(60) % 4 == 1)  # +15 queries: 75%
    for seed in (1, 2, 3):
        write_run(runs, "baseline", "cub", seed, (50.0, 60, 70, 80), hits=base_hits, labels=labels)
        write_run(runs, "cnenet", "cub", seed, (75.0, 80, 85, 90), hits=better, labels=labels)
        write_run(runs, "twin", "cub", seed, (50.0, 60, 70, 80), hits=base_hits, labels=labels)
    write_report(runs, tmp_path / "out", None, resamples=500)
    markdown = (tmp_path / "out" / "results.md").read_text()
    stats = section(markdown, "Tests against the baseline", "## Secondary")
    cnenet = table_rows(stats, "`cnenet`")[0]
    assert cnenet[1] == "3 (deterministic)" and cnenet[3] == "exact"  # identical seeds
    assert cnenet[4] == "**+25.0**" and float(cnenet[7].lstrip("< ")) < 0.05
    twin = table_rows(stats, "`twin`")[0]
    assert twin[4:8] == ["0.0", "[0.0, 0.0]", "1.000", "1.000"]
    assert "Inconsistent run files" not in markdown  # neighbors.npy agrees with results.json
    assert "Paired over 60 test queries." in stats
    assert "Each of 500 resamples (random seed 0)" in markdown  # the method, stated


def test_neighbors_disagreeing_with_results_are_reported(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    labels = np.repeat(np.arange(5), 4)
    write_run(
        runs, "baseline", "cub", 1, (90.0, 95, 97, 99), hits=np.zeros(20, bool), labels=labels
    )
    write_report(runs, tmp_path / "out", None, resamples=100)
    assert (
        "neighbors.npy gives R@1 0.00, results.json records 90.00"
        in (tmp_path / "out" / "results.md").read_text()
    )


# ----- robustness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda text: text[:-20], "not valid JSON"),
        (lambda text: text.replace('"recall@4"', '"recall@5"'), "metrics lacks recall@4"),
        (lambda text: text.replace('"schema": 1', '"schema": 7'), "schema 7 is not supported"),
        (
            lambda text: text.replace('"recall@1": 61.0', '"recall@1": "high"'),
            "metrics['recall@1']",
        ),
        (lambda text: text.replace('"seed": 1,', '"seed": 2,', 1), "lies in baseline/cub/seed1"),
    ],
)
def test_malformed_results_name_the_file(tmp_path: Path, corrupt, message: str) -> None:
    runs = tmp_path / "runs"
    run_dir = write_run(runs, "baseline", "cub", 1, (61.0, 70.0, 80.0, 90.0))
    path = run_dir / "results.json"
    path.write_text(corrupt(path.read_text()))
    with pytest.raises(ResultsError, match=re.escape(message)) as error:
        load_results(runs)
    assert str(path) in str(error.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_latex_uses_booktabs_with_consistent_columns(simple_suite, tmp_path: Path) -> None:
    runs, reference = simple_suite
    write_report(runs, tmp_path / "out", reference, resamples=200)
    tex = (tmp_path / "out" / "tables.tex").read_text()
    tables = re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", tex, flags=re.S)
    assert len(tables) >= 3  # comparison + Table 1 and Table 3 analogues
    for spec, body in tables:
        assert (
            body.count(r"\toprule") == 1 and body.count(r"\bottomrule") == 1 and r"\midrule" in body
        )
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert rows and all(len(re.findall(r"(?<!\\)&", row)) == len(spec) - 1 for row in rows)
    assert r"\textbf{71.2 $\pm$ 1.3}" in tex and "BL+NMM+NEM (Table 1)" in tex
    assert "dam\\_proxy" in tex  # underscores escaped


def test_same_inputs_same_files_and_relative_links(simple_suite, tmp_path: Path) -> None:
    runs, reference = simple_suite
    first = write_report(runs, tmp_path / "a", reference, resamples=200)
    second = write_report(runs, tmp_path / "b", reference, resamples=200)
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in first)
    assert names == sorted(p.relative_to(tmp_path / "b").as_posix() for p in second)
    assert {"results.md", "ablations_fake.md", "results.csv", "tables.tex", "index.html"} <= set(
        names
    )
    assert "figures/recall_curves_cub.png" in names and "figures/training_curves_cub.png" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    markdown = (tmp_path / "a" / "results.md").read_text()
    assert "newest run started 2025-01-02" in markdown
    links = re.findall(r"\]\((runs/[^)]+)\)", markdown)  # the run files copied into the report
    assert links and all((tmp_path / "a" / link).is_file() for link in links)
    assert "runs/cnenet/cub/seed2/train.log" in links
    assert str(tmp_path) not in markdown  # only relative links, no absolute paths


def test_figures_skip_with_a_note_and_draw_when_inputs_exist(tmp_path: Path) -> None:
    from PIL import Image

    data = tmp_path / "data" / "toy"
    rows = ["path,label,class_name,split,bbox_x,bbox_y,bbox_w,bbox_h"]
    labels = np.repeat(np.arange(4), 5)
    for index, label in enumerate(labels):
        (data / "img").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), (40 * int(label), 90, 200 - 40 * int(label))).save(
            data / f"img/{index}.png"
        )
        rows.append(f"img/{index}.png,{label},c{label},test,,,,")
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    runs = tmp_path / "runs"
    embeddings = np.random.default_rng(0).normal(size=(20, 8)) + labels[:, None]
    hits = np.arange(20) % 3 != 0
    r1 = 100 * hits.mean()
    write_run(
        runs,
        "baseline",
        "toy",
        1,
        (r1, 80, 90, 95),
        hits=hits,
        labels=labels,
        embeddings=embeddings,
        root=str(data),
    )
    write_run(
        runs, "cnenet", "toy", 1, (r1, 80, 90, 95), hits=hits, labels=labels, root="missing/data"
    )
    care = runs / "cnenet" / "toy" / "seed1" / "care_maps.png"
    Image.new("RGB", (30, 20), (255, 0, 0)).save(care)
    written = write_report(runs, tmp_path / "out", None, resamples=100)
    names = {p.name for p in written}
    assert {
        "retrieval_baseline_toy.png",
        "embedding_map_toy.png",
        "care_maps_cnenet_toy_seed1.png",
    } <= names
    assert "retrieval_cnenet_toy.png" not in names
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert (
        "Retrieval examples: cnenet on toy, seed 1: not drawn (images not available: "
        "missing/data/manifest.csv does not exist)" in markdown
    )
    assert "not found: ../runs/cnenet/toy/seed1/test_embeddings.npy" in markdown
    assert (
        tmp_path / "out" / "figures" / "care_maps_cnenet_toy_seed1.png"
    ).read_bytes() == care.read_bytes()


def test_command_line_reads_the_suite_grid(simple_suite, tmp_path: Path, capsys) -> None:
    runs, reference = simple_suite
    params = tmp_path / "params.yaml"
    grid = {"methods": ["baseline", "cnenet"], "datasets": ["cub", "cars"], "seeds": [1, 2]}
    params.write_text(yaml.safe_dump({"suite": grid}))
    arguments = ["--runs", str(runs), "--out", str(tmp_path / "out"), "--reference", str(reference)]
    arguments += ["--suite-config", str(params), "--resamples", "100"]
    command = [sys.executable, "-m", "benchmark.report", *arguments]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "out" / "index.html") in done.stdout.splitlines()
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "Recall@K (%) on cars" in markdown  # an expected dataset with no run at all
    broken = runs / "baseline" / "cub" / "seed1" / "results.json"
    broken.write_text("{")
    assert main(arguments) == 2
    assert str(broken) in capsys.readouterr().err


def test_text_from_run_files_is_escaped(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = write_run(runs, "baseline", "cub", 1, (61.0, 70.0, 80.0, 90.0))
    results = json.loads((run_dir / "results.json").read_text())
    results["provenance"]["command"] = "python run.py note=<script>alert(1)</script> a|b"
    results["provenance"]["device"] = "cpu & <gpu>"
    (run_dir / "results.json").write_text(json.dumps(results))
    write_report(runs, tmp_path / "out", None, resamples=100)
    html = (tmp_path / "out" / "index.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "cpu &amp; &lt;gpu&gt;" in html
    row = table_rows((tmp_path / "out" / "results.md").read_text(), "`baseline`")[-1]
    assert row[4] == r"`python run.py note=<script>alert(1)</script> a\|b`"  # the pipe escaped


def test_expected_grid_files(tmp_path: Path) -> None:
    from benchmark.report import load_expected

    plain = tmp_path / "grid.json"
    plain.write_text(json.dumps({"methods": ["cnenet"], "datasets": ["cub"], "seeds": [1, 2]}))
    assert load_expected(plain) == Expected(("cnenet",), ("cub",), (1, 2))
    broken = tmp_path / "broken.yaml"
    broken.write_text("suite:\n  methods: [cnenet]\n  seeds: [1]\n")
    with pytest.raises(
        ResultsError, match=re.escape(f"{broken}: the expected grid needs list(s) datasets")
    ):
        load_expected(broken)


def health(degenerate: bool = False, dead: float | None = None) -> dict:
    reasons = ["test Recall@1 2.0 is within 1.5x chance (2.0)"] if degenerate else []
    maps = None if dead is None else {"dead_map_fraction": dead, "mean_activation": 0.4,
                                      "map_overlap": 0.3, "equivariance_error": 0.05}  # fmt: skip
    return {"degenerate": degenerate, "degenerate_reasons": reasons, "chance_recall@1": 2.0,
            "embedding_spread": {"mean_cosine_distance": 0.5, "effective_rank": 9.0},
            "maps": maps}  # fmt: skip


def test_degenerate_runs_are_marked_and_listed_and_map_health_is_shown(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (1, 2, 3):
        write_run(runs, "baseline", "cub", (seed), (50.0 + seed, 60, 70, 80), health=health())
        collapsed = seed == 2
        r1 = 2.0 if collapsed else 55.0
        write_run(runs, "cnenet", "cub", seed, (r1, 60, 70, 80),
                  health=health(collapsed, dead=0.25 * (seed - 1)))  # fmt: skip
    write_report(runs, tmp_path / "out", None, resamples=200)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "1 degenerate run(s), marked ✗ in every table: `cnenet` on cub, seed 2: test" in markdown
    rows = named_rows(markdown, "**Recall@K (%) on cub")
    assert rows["`cnenet`"]["R@1"].endswith("✗1/3")  # the cell's mean ± std, then the mark
    assert rows["`cnenet`"]["Dead maps %"] == "25.0 ± 25.0"  # dead maps %: 0, 25, 50
    assert rows["`baseline`"]["R@1"].count("✗") == 0
    frame = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    dead = [r for r in frame if r["metric"] == "dead_map_fraction"]
    assert [(r["method"], float(r["mean"])) for r in dead] == [("cnenet", 25.0)]
    assert {r["degenerate_seeds"] for r in frame if r["method"] == "cnenet"} == {"1"}
    maps = named_rows(markdown, "**Nuance-map health on the test images of cub")["`cnenet`"]
    assert maps["Dead %"] == "25.0 ± 25.0" and maps["Mean overlap"] == "0.30 ± 0.00"
    assert maps["Distinct maps"] == "—"  # results from before the measure: shown as missing


def test_t_intervals_are_clipped_to_percentages_and_one_seed_has_no_test(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    labels = np.repeat(np.arange(10), 6)
    hits = np.arange(60) % 2 == 0
    for seed, r1 in ((1, 1.0), (2, 30.0)):  # mean 15.5, the t-interval reaches far below 0
        write_run(
            runs, "baseline", "cub", seed, (r1, 60, 70, 80), hits=hits ^ (seed == 2), labels=labels
        )
    write_run(runs, "cnenet", "cub", 1, (40.0, 60, 70, 80), hits=hits, labels=labels)
    write_report(runs, tmp_path / "out", None, resamples=200)
    markdown = (tmp_path / "out" / "results.md").read_text()
    stats = section(markdown, "Tests against the baseline", "## Secondary")
    baseline = table_rows(stats, "`baseline`")[0]
    assert baseline[3].startswith("[0.0, ")
    assert table_rows(stats, "`cnenet`")[0][4] == "n/a"
    assert "n/a for `baseline`: fewer than 3 seeds." in stats  # a test needs 3 seeds
    assert "n/a for `cnenet`: fewer than 3 seeds." in stats


def test_agreement_check_tells_identical_noise_and_difference(tmp_path: Path) -> None:
    from benchmark.report.agreement import main as agreement

    committed_runs, fresh = tmp_path / "committed", tmp_path / "fresh"
    for seed, r1 in ((1, 50.0), (2, 54.0), (3, 52.0)):
        write_run(committed_runs, "baseline", "cub", seed, (r1, 60, 70, 80))
        write_run(fresh, "baseline", "cub", seed, (r1 + 0.5, 60, 70, 80))  # within noise
        write_run(committed_runs, "cnenet", "cub", seed, (r1, 60, 70, 80))
        write_run(fresh, "cnenet", "cub", seed, (r1 + 30.0, 60, 70, 80))  # far outside
        for runs in (committed_runs, fresh):  # bit-identical runs, a mean the CSV rounds, std 0
            write_run(runs, "untrained", "cub", seed, (1093 / 30, 60, 70, 80))
    write_report(committed_runs, tmp_path / "out", None, resamples=100)
    csv_path = tmp_path / "out" / "results.csv"
    assert agreement(["--committed", str(csv_path), "--runs", str(fresh)]) == 1
    from benchmark.report.agreement import compare

    table = compare(csv_path, fresh).set_index(["method", "metric"])
    assert table.loc[("baseline", "recall@1"), "verdict"] == "within noise"
    assert table.loc[("baseline", "recall@2"), "verdict"] == "identical"
    assert table.loc[("cnenet", "recall@1"), "verdict"] == "differs"
    assert table.loc[("untrained", "recall@1"), "verdict"] == "identical"  # 36.4333... vs 36.4333
    assert agreement(["--committed", str(csv_path), "--runs", str(committed_runs)]) == 0


def test_agreement_expects_identical_numbers_from_pinned_runs_of_one_backbone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmark.report.agreement import expectation, run_inputs
    from benchmark.report.agreement import main as agreement

    committed_runs, fresh = tmp_path / "committed", tmp_path / "fresh"
    for seed, r1 in ((1, 50.0), (2, 54.0), (3, 52.0)):  # from before the setting was recorded
        write_run(committed_runs, "baseline", "cub", seed, (r1, 60, 70, 80), cpu_isa=None)
        write_run(fresh, "baseline", "cub", seed, (r1 + 0.5, 60, 70, 80), cpu_isa=None)
    write_report(committed_runs, tmp_path / "out", None, resamples=100)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "3 of 3 runs used the CPU's own kernels (native (unrecorded))" in markdown
    csv_path = tmp_path / "out" / "results.csv"
    # runs that recorded no setting ran unpinned: noise is all one may expect
    assert run_inputs(fresh)["CPU instruction set"] == {"native (unrecorded)"}
    assert agreement(["--committed", str(csv_path), "--runs", str(fresh)]) == 0
    assert "expected: within noise; met" in capsys.readouterr().out
    assert agreement(["--committed", str(csv_path), "--runs", str(fresh), "--expect", "identical"])
    assert "expected: identical; falls short: within noise" in capsys.readouterr().out
    pinned = {"CPU instruction set": {"avx2"}, "device": {"cpu"}, "backbone file": {"f"}}
    assert expectation(pinned, pinned) == "identical"
    assert expectation(pinned, {**pinned, "backbone file": {"g"}}) == "identical"  # metadata
    assert expectation(pinned, {**pinned, "CPU instruction set": {"native"}}) == "within noise"
    assert expectation(pinned, {**pinned, "device": {"cuda"}}) == "within noise"  # not pinned


def test_descriptor_parts_are_shown_beside_the_whole(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, (nuance, pooled) in ((1, (30.0, 40.0)), (2, (32.0, 44.0))):
        run_dir = write_run(runs, "cnenet", "cub", seed, (50.0, 60, 70, 80))
        results = json.loads((run_dir / "results.json").read_text())
        results["descriptor_parts"] = {
            "nuance": {"recall@1": nuance, "map@r": nuance / 2},
            "pooled": {"recall@1": pooled, "map@r": pooled / 2},
        }
        (run_dir / "results.json").write_text(json.dumps(results))
        write_run(runs, "baseline", "cub", seed, (45.0, 60, 70, 80))
    write_report(runs, tmp_path / "out", None, resamples=100)
    markdown = (tmp_path / "out" / "results.md").read_text()
    table = section(markdown, "**Descriptor parts alone on cub**", "## Cost")
    header = table_rows(table, "Method")[0]
    assert header[2:5] == ["R@1 full", "R@1 nuance", "R@1 pooled"]
    assert table_rows(table, "`cnenet`")[0][2:5] == ["50.0 ± 0.0", "31.0 ± 1.4", "42.0 ± 2.8"]
    assert table_rows(table, "`baseline`") == []  # declares no parts
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    row = frame[(frame["method"] == "cnenet") & (frame["metric"] == "recall@1 [pooled]")]
    assert float(row["mean"].iloc[0]) == pytest.approx(42.0)
