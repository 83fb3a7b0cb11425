"""The test-split ledger: one line per evaluation of a run on the test split.

Evaluation appends to ``<run>/test_evaluations.csv``; the report counts the lines, so it can say
how often each configuration saw the test set (tuning and calibration runs cannot: they are
sealed from it, ``FGOR_SEALED``). ``configuration`` is a sha256 prefix of the resolved config
without :data:`NOT_CONFIGURATION`, the same for every seed of one setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.atomic import write_atomic_text
from benchmark.fingerprint import config_sha256

TEST_LEDGER = "test_evaluations.csv"
COLUMNS = ("evaluated", "method", "dataset", "seed", "configuration", "git_commit")
NOT_CONFIGURATION = (  # keys that name where or how a run is kept, not what it trains
    "seed", "run_dir", "runs_root", "suite_name", "progress", "resume", "stage", "save_embeddings",
)  # fmt: skip


def configuration(config: dict[str, Any]) -> str:
    return config_sha256({k: v for k, v in config.items() if k not in NOT_CONFIGURATION})[:12]


def record_test_evaluation(run_dir: Path, results: dict[str, Any]) -> None:
    """Append the evaluation ``results`` (a results.json document) to the run's ledger."""
    provenance = results["provenance"]
    row = (
        provenance.get("eval_started") or provenance.get("started"), results["method"],
        results["dataset"], results["seed"], configuration(results["config"]),
        provenance["git_commit"],
    )  # fmt: skip
    ledger = Path(run_dir) / TEST_LEDGER
    before = ledger.read_text() if ledger.is_file() else ",".join(COLUMNS) + "\n"
    write_atomic_text(ledger, before + ",".join(str(v) for v in row) + "\n")


def evaluations_of(run_dir: Path) -> int | None:
    """How many times the run was evaluated on the test split (None: no ledger, a run made
    before the ledger existed)."""
    ledger = Path(run_dir) / TEST_LEDGER
    if not ledger.is_file():
        return None
    return max(0, len(ledger.read_text().splitlines()) - 1)
