"""The small per-run files a report links, copied into the report folder so its links work in a
clone (runs/ is not in git): ``<report>/runs/<method>/<dataset>/seed<k>/<file>``.

Only text files a reader checks a number against are copied (never checkpoints, embeddings or
neighbour arrays); a log larger than :data:`MAX_BYTES` is not copied and not linked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import pandas as pd

# (label in the provenance table, file name)
COPIED = (
    ("config", "config.yaml"),
    ("results", "results.json"),
    ("history", "history.csv"),
    ("log", "train.log"),
    ("eval log", "eval.log"),
    ("test ledger", "test_evaluations.csv"),
)
# files a run may lack: eval.log (runs evaluated as a stage of their own), the test-split ledger
# (runs made before it existed: benchmark/ledger.py)
OPTIONAL = ("eval.log", "test_evaluations.csv")
MAX_BYTES = 256 * 1024
FOLDER = "runs"
# files the report writes into folders of its own, deleted when an earlier report wrote them and
# this one does not: (folder, file suffix); curves/ held per-run DVC plots before plots/ did
GENERATED = (("metrics", ".json"), ("plots", ".tsv"), ("curves", ".tsv"), ("statistics", ".csv"))


def report_path(method: str, dataset: str, seed: int, name: str) -> Path:
    """Where a run's file lies inside the report folder."""
    return Path(FOLDER) / method / dataset / f"seed{seed}" / name


def copyable(path: Path) -> bool:
    return path.is_file() and path.stat().st_size <= MAX_BYTES


def run_files(results: pd.DataFrame) -> dict[Path, bytes]:
    """report-relative path -> bytes, for every copyable file of every run."""
    files = {}
    for row in results.itertuples(index=False):
        for _, name in COPIED:
            source = Path(row.run_dir) / name
            if copyable(source):
                files[report_path(row.method, row.dataset, row.seed, name)] = source.read_bytes()
    return files


def config_hash(run_dir: Path) -> str:
    """The first 12 hex digits of the sha256 of the run's config.yaml (— when absent)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return "—"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def remove_stale(out_dir: Path, keep: set[Path]) -> None:
    """Delete copied run files, DVC metrics and plots of an earlier report that this one does not
    write."""
    names = {name for _, name in COPIED}
    folders = [(Path(out_dir) / FOLDER, names.__contains__)]
    folders += [
        (Path(out_dir) / f, lambda name, s=suffix: name.endswith(s)) for f, suffix in GENERATED
    ]
    for folder, wanted in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and wanted(path.name) and path.relative_to(out_dir) not in keep:
                path.unlink()
        for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def link(method: str, dataset: str, seed: int, run_dir: Path, name: str) -> str | None:
    """The report-relative link to a run's copied file, or None when it is not copied."""
    if not copyable(Path(run_dir) / name):
        return None
    return quote(report_path(method, dataset, seed, name).as_posix(), safe="/._-~")
