"""The HTML report renders offline in headless Chromium: its tables and every image show."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageStat

from benchmark.report import write_report
from tests.test_report import REPO, write_reference, write_run

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)"
)

# appended to a copy of the page: after load, record what rendered in a data attribute
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.check = JSON.stringify({
    tables: document.querySelectorAll("table").length,
    rows: document.querySelectorAll("tbody tr").length,
    images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    width: document.querySelector("table").getBoundingClientRect().width,
  });
});
</script>"""


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    profile.mkdir()
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("html")
    runs = tmp_path / "runs" / "fake"
    labels = np.repeat(np.arange(6), 5)
    rng = np.random.default_rng(0)
    for method, rate in (("baseline", 0.5), ("cnenet", 0.8), ("proxynca_pp", 0.7)):
        for seed in (1, 2):
            hits = rng.random(len(labels)) < rate
            embeddings = rng.normal(size=(len(labels), 6)) + 3 * np.eye(6)[labels]
            r1 = 100 * hits.mean()
            write_run(
                runs,
                method,
                "cub",
                seed,
                (r1, r1 + 5, r1 + 9, r1 + 12),
                hits=hits,
                labels=labels,
                embeddings=embeddings,
            )
    out = tmp_path / "reports"
    write_report(runs, out, write_reference(tmp_path), resamples=200)
    return out


def test_page_is_self_contained(report: Path) -> None:
    page = (report / "index.html").read_text()
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "a network reference"
    assert page.count('src="data:image/png;base64,') == len(
        list((report / "figures").glob("*.png"))
    )


def test_tables_and_images_render_in_chromium(report: Path, tmp_path: Path) -> None:
    checked = tmp_path / "check.html"
    checked.write_text(
        (report / "index.html").read_text().replace("</body>", CHECK_SCRIPT + "</body>")
    )
    done = chromium(
        tmp_path,
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        "--dump-dom",
        checked.as_uri(),
    )
    match = re.search(r'data-check="([^"]+)"', done.stdout)
    assert match, f"no render check in the DOM; chromium said: {done.stderr[-2000:]}"
    state = json.loads(match.group(1).replace("&quot;", '"'))
    assert state["tables"] >= 8 and state["rows"] >= 30
    figures = len(list((report / "figures").glob("*.png")))  # curves, bars, losses, 2-D map
    assert figures >= 4 and state["images"] == figures and state["loaded"] == figures, state
    assert state["width"] > 300


def test_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
    done = chromium(
        tmp_path,
        f"--screenshot={screenshot}",
        "--window-size=1280,2000",
        (report / "index.html").as_uri(),
    )
    assert screenshot.is_file(), done.stderr[-2000:]
    with Image.open(screenshot) as image:
        gray = image.convert("L")
        assert gray.size == (1280, 2000)
        assert ImageStat.Stat(gray).stddev[0] > 20  # text and table rules, not a blank page
        top, bottom = gray.crop((0, 0, 1280, 1000)), gray.crop((0, 1000, 1280, 2000))
        assert (
            min(top.getextrema()) < 60 and min(bottom.getextrema()) < 60
        )  # dark text in both halves


FIRST_SCREEN = """<script>
window.addEventListener("load", () => {
  const board = document.querySelector("table");
  const rows = Array.from(board.querySelectorAll("tbody tr"));
  const main = document.querySelector("main").getBoundingClientRect().width;
  document.body.dataset.check = JSON.stringify({
    caption: board.closest("figure, div, section, table").innerText.slice(0, 60),
    header: Array.from(board.querySelectorAll("thead th")).map(c => c.innerText),
    methods: rows.map(r => r.cells[1].innerText),
    recalls: rows.map(r => parseFloat(r.cells[3].innerText)),
    bottom: rows[rows.length - 1].getBoundingClientRect().bottom,
    page: document.documentElement.scrollWidth,
    widest: Math.max(...Array.from(document.querySelectorAll("table"))
      .map(t => t.getBoundingClientRect().width)),
    main: main,
  });
});
</script>"""


def first_screen(page: Path, tmp_path: Path) -> dict:
    """What a 1400 x 900 window shows of ``page`` (self-contained: figures are inline)."""
    checked = tmp_path / "first_screen.html"
    checked.write_text(page.read_text().replace("</body>", FIRST_SCREEN + "</body>"))
    done = chromium(tmp_path, "--window-size=1400,900", "--virtual-time-budget=5000",
                    "--dump-dom", checked.as_uri())  # fmt: skip
    match = re.search(r'data-check="([^"]+)"', done.stdout)
    assert match, f"no render check in the DOM; chromium said: {done.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"'))


def assert_leaderboard_first(state: dict, methods: int) -> None:
    assert state["header"][:5] == ["#", "Method", "n", "R@1", "95% CI"], state
    assert len(state["methods"]) == methods and "untrained" in state["methods"]
    assert state["recalls"] == sorted(state["recalls"], reverse=True)  # best first
    assert state["bottom"] <= 900, f"the leaderboard ends below the first screen: {state}"
    assert state["widest"] <= state["main"] and state["page"] <= 1400, state


def test_first_screen_shows_the_sorted_leaderboard_and_every_table_fits(tmp_path: Path) -> None:
    """1400 x 900: the leaderboard of a 14-method suite, with intervals and the untrained row,
    ends above the fold, and no table is wider than the page's column."""
    runs, labels = tmp_path / "runs", np.repeat(np.arange(20), 10)
    rng = np.random.default_rng(0)
    rates = dict(
        zip([f"method_{i:02d}" for i in range(12)], np.linspace(0.3, 0.7, 12), strict=True)
    )
    fixed = rng.random(len(labels)) < 0.35
    for seed in (1, 2, 3):
        for method, rate in {"untrained": None, "baseline": 0.45, **rates}.items():
            hits = fixed if rate is None else rng.random(len(labels)) < rate
            r1 = 100 * hits.mean()
            write_run(
                runs, method, "cub", seed, (r1, r1 + 5, r1 + 9, r1 + 12), hits=hits, labels=labels
            )
    out = tmp_path / "reports"
    write_report(runs, out, write_reference(tmp_path), resamples=200)
    assert_leaderboard_first(first_screen(out / "index.html", tmp_path), 14)


def test_committed_report_opens_with_the_leaderboard_and_fits_1400_px(tmp_path: Path) -> None:
    """The default suite's committed page. The ablation suite's page inlines its figures (~11 MB)
    and is not committed; its committed leaderboard.md is checked below instead."""
    methods = len(
        yaml.safe_load((REPO / "configs" / "suite" / "default.yaml").read_text())["methods"]
    )
    assert_leaderboard_first(first_screen(REPO / "reports" / "index.html", tmp_path), methods)


def test_committed_ablation_leaderboard_lists_every_method_best_first() -> None:
    suite = yaml.safe_load((REPO / "configs" / "suite" / "ablation.yaml").read_text())["methods"]
    table = (REPO / "reports" / "ablation" / "leaderboard.md").read_text().split("| ---: |", 1)[1]
    rows = [line.split("|") for line in table.split("\n\n")[0].splitlines()[1:]]
    methods = [row[2].strip().strip("`") for row in rows]
    recalls = [float(row[4]) for row in rows]
    assert sorted(methods) == sorted(suite)
    assert recalls == sorted(recalls, reverse=True)
