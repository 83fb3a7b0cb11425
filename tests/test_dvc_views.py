"""The DVC views of a report, with the real DVC in a scratch workspace: `dvc metrics show` and the
guide's `dvc exp show` fit a 120-column terminal, and `dvc plots show` writes a page that needs no
network and draws one chart per history column with a line per run (headless Chromium)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.dvc_plots_page import PACKAGES, PAGE
from benchmark.report import write_report
from tests.test_report import write_reference, write_run
from tests.test_report_html import CHROMIUM, chromium

REPO = Path(__file__).resolve().parent.parent
WIDTH = 120
METHODS = ("cnenet", "multi_similarity")  # the longest method name of the default suite
DATASETS = ("synthetic", "synthetic_tiny")
SEEDS = (1, 2)
HISTORY = ("ce", "sd", "total", "lr", "images_per_second", "seconds")  # write_run's columns
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9")


def dvc(workspace: Path, *arguments: str) -> str:
    env = dict(os.environ, COLUMNS=str(WIDTH), DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(arguments, cwd=workspace, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(arguments)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def declarations() -> dict:
    """dvc.yaml's report metrics and top-level plots, on a stage that runs nothing."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stage = {"cmd": "true", "params": ["suite"], "metrics": pipeline["stages"]["report"]["metrics"]}
    return {"stages": {"report": stage}, "plots": pipeline["plots"]}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository with the project's .dvc/ settings and a report of fake runs."""
    root = tmp_path_factory.mktemp("dvc_views")
    for dataset in DATASETS:
        for method in METHODS:
            for seed in SEEDS:
                write_run(root / "runs", method, dataset, seed, (60.0 + seed, 70.0, 80.0, 90.0))
    workspace = root / "workspace"
    shutil.copytree(
        REPO / ".dvc", workspace / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache")
    )
    (workspace / "dvc.yaml").write_text(yaml.safe_dump(declarations()))
    (workspace / "params.yaml").write_text("suite:\n  name: fake\n  report_dir: reports\n")
    write_report(root / "runs", workspace / "reports", write_reference(root), resamples=20)
    for command in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *command], cwd=workspace, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "report"],
                   cwd=workspace, check=True)  # fmt: skip
    return workspace


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_metrics_show_prints_a_row_per_cell_within_120_columns(workspace: Path) -> None:
    shown = dvc(workspace, "dvc", "metrics", "show")
    rows = [line for line in shown.splitlines() if line.startswith("reports/metrics/")]
    assert len(rows) == len(METHODS) * len(DATASETS), shown
    assert "reports/metrics/synthetic_tiny/multi_similarity.json" in shown
    assert widest(shown) <= WIDTH, shown
    assert widest(dvc(workspace, "dvc", "metrics", "diff", "HEAD", "--all")) <= WIDTH


def readme_command(prefix: str) -> list[str]:
    """The command of docs/guide.md's "Tracking experiments" block that starts with ``prefix``."""
    section = (REPO / "docs" / "guide.md").read_text().split("## Tracking experiments", 1)[1]
    line = next(x for x in section.splitlines() if x.startswith(prefix))
    return shlex.split(line, comments=True)


def test_the_readmes_exp_show_fits_120_columns(workspace: Path) -> None:
    command = readme_command("dvc exp show")
    shown = dvc(workspace, *command, "--no-pager")
    assert "reports/metrics/synthetic/cnenet.json:recall@1" in shown and "…" not in shown
    assert "fake" in shown and "61.5" in shown, shown  # suite.name; R@1, the mean of 61 and 62
    assert widest(shown) <= WIDTH, shown
    assert "…" in dvc(workspace, "dvc", "exp", "show", "--no-pager")  # why it selects


def test_the_offline_page_inlines_pinned_libraries() -> None:
    page = PAGE.read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN tags go nowhere
    assert not re.search(r"<script[^>]*\bsrc=", page) and "sourceMappingURL" not in page
    assert all(f"/* {name} {version} */" in page for name, version, _, _ in PACKAGES)
    assert "Redistribution and use in source and binary forms" in page  # the BSD-3 licence
    assert PAGE.stat().st_size < 1_000_000


@pytest.fixture(scope="module")
def plots_page(workspace: Path) -> Path:
    dvc(workspace, "dvc", "plots", "show", "-o", "dvc_plots")
    return workspace / "dvc_plots" / "index.html"


def test_plots_show_writes_one_chart_per_column_and_no_network_reference(
    plots_page: Path,
) -> None:
    page = plots_page.read_text()
    assert not re.search(r"""<script[^>]*\bsrc=""", page), "a script loaded from elsewhere"
    assert "cdn.jsdelivr" not in page
    charts = re.findall(r"vegaEmbed\('#([^']+)'", page)
    assert len(charts) == len(DATASETS) * len(HISTORY), charts


def test_plots_diff_overlays_two_revisions(workspace: Path) -> None:
    shown = dvc(workspace, "dvc", "plots", "diff", "HEAD", "--json")
    assert '"errors"' not in shown and '"rev": "HEAD"' in shown and '"rev": "workspace"' in shown


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_every_chart_renders_offline_in_chromium(plots_page: Path, tmp_path: Path) -> None:
    done = chromium(tmp_path, *OFFLINE, "--virtual-time-budget=10000", "--dump-dom",
                    plots_page.as_uri())  # fmt: skip
    divs = re.split(r'<div id="', done.stdout)[1:]
    charts = [d for d in divs if d.startswith("reports_plots_")]
    assert len(charts) == len(DATASETS) * len(HISTORY), done.stderr[-2000:]
    for chart in charts:  # vega drew each as SVG: a line through every epoch per run
        lines = re.findall(r'aria-roledescription="line mark" d="(M[^"]*)"', chart)
        assert len(lines) == len(METHODS) * len(SEEDS), chart[:500]
        assert all(line.count("L") == 2 for line in lines), lines  # write_run: 3 epochs
        assert all(f"method: {method}" in chart for method in METHODS)
