"""A report cannot mislead: every relative link in its Markdown and HTML resolves to a file of
the report tree (so it works in a clone, where runs/ is absent), and no table row is all
placeholders. Checked on a report rendered from fixture runs and on the committed reports/."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from benchmark.report import Expected, write_report
from tests.test_report import REPO, config_for, write_reference, write_run

PLACEHOLDERS = {"", "—", "n/a", "not run"}
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
HTML_LINK = re.compile(r'(?:href|src)="([^"]+)"')
HTML_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
HTML_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)
TAG = re.compile(r"<[^>]+>")


def links(path: Path) -> list[str]:
    """The relative link targets of a Markdown or HTML file (no URLs, anchors or data URIs)."""
    text = path.read_text(encoding="utf-8")
    found = (MARKDOWN_LINK if path.suffix == ".md" else HTML_LINK).findall(text)
    targets = [html.unescape(link) for link in found]
    return [t for t in targets if not re.match(r"^(#|[a-z][a-z0-9+.-]*:)", t)]


def report_files(root: Path) -> list[Path]:
    return sorted([*root.rglob("*.md"), *root.rglob("*.html")])


def dead_links(files: list[Path], root: Path) -> list[str]:
    """``file: link`` for every link of ``files`` that resolves to no file inside ``root``."""
    dead = []
    for path in files:
        for link in links(path):
            target = (path.parent / unquote(link.split("#")[0])).resolve()
            if not target.is_file() or not target.is_relative_to(root.resolve()):
                dead.append(f"{path.relative_to(root)}: {link}")
    return dead


def table_rows(path: Path) -> list[list[str]]:
    """The body rows of every table of a Markdown or HTML file, as plain-text cells."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".html":
        rows = []
        for row in HTML_ROW.findall(text):
            if "<th" not in row:
                rows.append([html.unescape(TAG.sub("", c)).strip() for c in HTML_CELL.findall(row)])
        return rows
    rows, lines = [], text.splitlines()
    for index, line in enumerate(lines):
        header = index + 1 < len(lines) and re.match(r"\| :?-", lines[index + 1])
        if line.startswith("| ") and not re.match(r"\| :?-", line) and not header:
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def placeholder_rows(files: list[Path], root: Path) -> list[str]:
    """Rows whose cells after the first (the row's name) are all placeholders."""
    bad = []
    for path in files:
        for cells in table_rows(path):
            if len(cells) > 1 and all(c.strip("* ") in PLACEHOLDERS for c in cells[1:]):
                bad.append(f"{path.relative_to(root)}: {' | '.join(cells)}")
    return bad


def tuned_config(method: str, dataset: str, seed: int) -> dict:
    config = config_for(method, dataset, seed, "data/none")
    config["method"]["margin"] = 0.1
    config["tuned"] = {
        "lr_scale": 0.3,
        "knobs": {"margin": 0.1},
        "fixed": ["frozen_backbone_epochs"],
        "report": "reports/tuning/tune-methods.md",
    }
    return config


@pytest.fixture
def report_tree(tmp_path: Path) -> Path:
    """reports/ (suite fake: a missing method, a tuned method, a few ablation rows) with the
    ablation suite's report inside it, as the pipeline lays them out."""
    reference = write_reference(tmp_path)
    tuning = tmp_path / "reports" / "tuning" / "tune-methods.md"
    tuning.parent.mkdir(parents=True)
    tuning.write_text("# Method knobs\n\nEvery method: 6 trials (3 learning-rate scales).\n")
    ablation_runs = tmp_path / "runs" / "ablation"
    for method in ("baseline", "bl_nmm", "cnenet_l2"):
        run_dir = write_run(ablation_runs, method, "cub", 1, (60.0, 70.0, 80.0, 90.0))
        results = json.loads((run_dir / "results.json").read_text())
        (run_dir / "results.json").write_text(json.dumps({**results, "suite": "ablation"}))
    write_report(ablation_runs, tmp_path / "reports" / "ablation", reference, resamples=50)
    runs = tmp_path / "runs" / "fake"
    for seed in (1, 2):
        write_run(runs, "baseline", "cub", seed, (60.0 + seed, 70.0, 80.0, 90.0))
        write_run(runs, "cnenet", "cub", seed, (70.0 + seed, 80.0, 85.0, 95.0))
        config = tuned_config("proxy_anchor", "cub", seed)
        write_run(runs, "proxy_anchor", "cub", seed, (65.0, 75.0, 85.0, 95.0), config=config)
    expected = Expected(("baseline", "cnenet", "proxy_anchor", "proxynca_pp"), ("cub",), (1, 2))
    write_report(runs, tmp_path / "reports", reference, expected, resamples=50, data_root=tmp_path)
    shutil.rmtree(tmp_path / "runs")  # a clone has no runs/: every link must still work
    return tmp_path / "reports"


def test_fixture_report_has_no_dead_link_and_no_placeholder_row(report_tree: Path) -> None:
    files = report_files(report_tree)
    assert len(files) >= 6  # results, ablations, index of both suites, the tuning report
    assert dead_links(files, report_tree) == []
    assert placeholder_rows(files, report_tree) == []
    markdown = (report_tree / "results.md").read_text()
    # the checks can fail: the run files are linked, the paper is a column, the missing method
    # is named rather than shown as an empty row
    assert "[s1](runs/cnenet/cub/seed1/results.json)" in markdown
    assert (report_tree / "runs" / "cnenet" / "cub" / "seed1" / "history.csv").is_file()
    assert not list(report_tree.rglob("*.npy")) and not list(report_tree.rglob("*.pt"))
    assert "| Paper R@1 |" in markdown and "reported |" not in markdown
    assert "Not run: `proxynca_pp`." in markdown
    assert "[ablations_fake.md](ablations_fake.md)" in markdown


def test_ablation_rows_run_elsewhere_link_that_suites_report(report_tree: Path) -> None:
    ablations = (report_tree / "ablations_fake.md").read_text()
    assert "(ablation/ablations_ablation.md)" in ablations  # ran bl_nmm, cnenet_l2
    assert "`bl_nmm`" in ablations.split("Not run in this suite:")[1]
    page = (report_tree / "index.html").read_text()
    assert 'href="ablation/ablations_ablation.md"' in page
    assert not (report_tree / "ablation.md").exists()


def test_methods_table_and_tuning_in_fairness(report_tree: Path) -> None:
    markdown = (report_tree / "results.md").read_text()
    methods = markdown[markdown.index("## Methods") : markdown.index("## Fairness")]
    assert "| Method | Loss | Changes beyond its loss | Tuned knobs |" in methods
    assert "| `proxy_anchor` | see its builder |" in methods
    assert "lr x0.3; margin 0.1" in methods and "| `cnenet` |" in methods
    fairness = markdown[markdown.index("## Fairness") : markdown.index("## Provenance")]
    row = next(line for line in fairness.splitlines() if line.startswith("| `proxy_anchor`"))
    assert "| 0.3 | margin 0.1 | `frozen_backbone_epochs` | 6 trials |" in row
    assert "(tuning/tune-methods.md)" in row
    assert "| `baseline` | 1 | not tuned |" in fairness


def test_a_dead_link_and_a_placeholder_row_are_caught(tmp_path: Path) -> None:
    (tmp_path / "ok.md").write_text("x")
    (tmp_path / "r.md").write_text(
        "[a](ok.md) [b](../runs/x/config.yaml) [c](https://example.org)\n\n"
        "| Method | R@1 | R@2 |\n| :--- | ---: | ---: |\n| `a` | 1.0 | — |\n| BL | — | — |\n"
    )
    files = report_files(tmp_path)
    assert dead_links(files, tmp_path) == ["r.md: ../runs/x/config.yaml"]
    assert placeholder_rows(files, tmp_path) == ["r.md: BL | — | —"]


def test_committed_report_has_no_dead_link_and_no_placeholder_row() -> None:
    """The default suite's committed report (reports/*.md, *.html and its runs/ copies)."""
    reports = REPO / "reports"
    files = sorted([*reports.glob("*.md"), *reports.glob("*.html")])
    assert reports / "results.md" in files and reports / "index.html" in files
    assert dead_links(files, REPO) == []  # links into the repository (reports/tuning/ too)
    assert placeholder_rows(files, REPO) == []
