"""The README is a front door: short, its results block generated from the committed report and
agreeing with reports/results.csv, and every relative link of it and of docs/ resolving."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from benchmark.report import readme

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def results_block() -> str:
    text = README.read_text()
    return text.split(readme.START)[1].split(readme.END)[0]


def test_readme_is_a_front_door() -> None:
    assert len(README.read_text().splitlines()) <= 200
    assert "dvc repro" in README.read_text() and "python3 tasks.py test" in README.read_text()


def test_results_block_is_the_generated_leaderboard() -> None:
    assert readme.main(["--report", str(REPO / "reports"), "--readme", str(README), "--check"]) == 0


def test_every_number_of_the_results_block_is_in_results_csv() -> None:
    csv = pd.read_csv(REPO / "reports" / "results.csv")
    recall = csv[csv["metric"] == "recall@1"].set_index(["dataset", "method"])["mean"]
    checked, dataset = set(), None
    for line in results_block().splitlines():
        if caption := re.match(r"\*\*Leaderboard on (\S+)\*\*", line):
            dataset = caption.group(1)
        elif (
            line.startswith("| ")
            and dataset
            and (dataset, line.split("|")[2].strip(" `")) in recall
        ):
            cells = [c.strip() for c in line.split("|")[1:-1]]
            key = (dataset, cells[1].strip("`"))
            assert cells[3] == f"{recall[key]:.1f}", f"README R@1 of {key}: {cells[3]}"
            checked.add(key)
    assert checked == set(recall.index), "every method of results.csv is in the README's block"


def test_relative_links_of_readme_and_docs_resolve() -> None:
    broken = []
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_the_cost_of_pinning_in_the_readme_is_the_measured_one() -> None:
    table = (REPO / "reports" / "perf" / "isa_cost_embedded.md").read_text()
    speed = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells and cells[0].startswith(("reference", "unpinned")):
            speed[cells[0].split(" ")[0]] = float(cells[7])  # train images/s
    ratio = speed["unpinned"] / speed["reference"]
    assert f"trains {ratio:.2f}x as many images per second" in README.read_text()


def test_the_busy_machine_and_repro_figures_in_the_readme_are_the_measured_ones() -> None:
    import json

    text = " ".join(README.read_text().split())
    slowdown = {}
    for line in (REPO / "reports" / "perf" / "contention.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 5 and cells[1] == "yes":
            slowdown[cells[0]] = cells[3]  # "1.18x"
    claim = (f"pretraining then slows {slowdown['passive']} instead of {slowdown['active']} "
             "with spinning threads")  # fmt: skip
    assert claim in text, claim
    assert (
        "Weights identical across policies and load: yes."
        in (REPO / "reports" / "perf" / "contention.md").read_text()
    )  # "which changes no number"
    repro = json.loads((REPO / "reports" / "perf" / "repro_default.json").read_text())
    assert f"the whole of it took {repro['minutes']} minutes" in text
    assert repro["minutes"] > 30 and "over the 30 the default aims for" in text


def test_tasks_lists_every_command_it_runs() -> None:
    import tasks

    listed = set(re.findall(r"python3 tasks.py (\w+)", tasks.__doc__ or ""))
    assert listed == {"setup", "repro", "test"}
    assert tasks.main([]) == 2  # no command: the list is printed
