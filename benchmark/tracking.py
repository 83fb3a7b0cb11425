"""Per-epoch logging through DVCLive (DVC's own logger) into ``<run_dir>/dvclive/``.

Every history.csv column but ``epoch`` (loss terms, lr, speed, method stats, probe health and,
when the validation classes are held out, ``val_recall@1`` / ``val_map@r``) becomes
``dvclive/plots/metrics/<column>.tsv`` with ``step`` = the epoch (1-based), and
``dvclive/metrics.json`` holds the last epoch's values. The train stage of dvc.yaml declares
``dvclive/plots/metrics`` as plots, so ``dvc plots show`` / ``dvc plots diff`` draw them.

DVCLive writes no dvc.yaml and saves no experiment of its own: the pipeline declares the files
and ``dvc exp run`` records the experiment. A resumed run replays the checkpoint's history first,
so the directory always matches history.csv.
"""

from __future__ import annotations

from pathlib import Path

from dvclive import Live

DVCLIVE_DIR = "dvclive"


class EpochLogger:
    """DVCLive logger of one run's history rows (rank 0 only)."""

    def __init__(self, run_dir: Path, history: list[dict[str, float]]) -> None:
        directory = Path(run_dir) / DVCLIVE_DIR
        self.live = Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None)  # starts clean
        # the stage's plots output exists even for a run with no epoch (the untrained reference)
        (directory / "plots" / "metrics").mkdir(parents=True, exist_ok=True)
        for row in history:
            self.log(row)

    def log(self, row: dict[str, float]) -> None:
        """One epoch's row: each value at step ``row["epoch"]``."""
        self.live.step = int(row["epoch"])
        for name, value in row.items():
            if name != "epoch":
                self.live.log_metric(name, float(value))
        self.live.next_step()

    def close(self) -> None:
        self.live.end()
