"""Load every ``results.json`` of a suite into one table, validating schema 1.

A run directory is ``runs/<suite>/<method>/<dataset>/seed<k>/``. Any file that breaks the schema
stops the report with a :class:`ResultsError` naming the file and the key: a report never silently
skips a run it cannot read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

SCHEMA = 1
RECALL_KS = (1, 2, 4, 8)
METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision")
COST = (
    "train_seconds", "eval_seconds", "wall_seconds", "images_per_second", "peak_memory_mb",
    "parameters", "descriptor_dim",
)  # fmt: skip
PROVENANCE = (
    "command", "git_commit", "git_dirty", "manifest_sha256", "libraries", "device", "python",
    "started",
)  # fmt: skip
TOP_LEVEL = {
    "schema": int, "suite": str, "method": str, "builder": str, "dataset": str, "seed": int,
    "metrics": dict, "cost": dict, "param_groups": list, "declared": dict, "provenance": dict,
    "config": dict,
}  # fmt: skip


LOCALISATION_MEASURES = {  # column -> (health.localisation key, sub-key of a reference)
    "loc_pointing": ("pointing", None), "loc_best_pointing": ("best_pointing", None),
    "loc_nuance_mass": ("nuance_mass", None), "loc_parts_found": ("nuance_parts_found", None),
    "loc_uniform_pointing": ("uniform", "pointing"), "loc_uniform_mass": ("uniform", "nuance_mass"),
    "loc_random_pointing": ("random", "pointing"), "loc_random_mass": ("random", "nuance_mass"),
}  # fmt: skip
LOCALISATION_COLUMNS = tuple(LOCALISATION_MEASURES)

COLUMNS = (
    "method", "dataset", "seed", "builder", "suite", *METRICS, *COST, "run_dir", "results_path",
    "command", "git_commit", "git_dirty", "manifest_sha256", "device", "cpu_isa", "started",
    "libraries",
    "declared", "capabilities", "descriptor_parts", "param_groups", "config", "degenerate",
    "degenerate_reasons",
    "chance_recall@1", "dead_map_fraction", "map_inactive", "map_overlap", "map_largest_overlap",
    "map_distinct", "map_equivariance", *LOCALISATION_COLUMNS,
)  # fmt: skip


class ResultsError(ValueError):
    """A results.json (or a grid file) the report cannot use; the message names the file."""


@dataclass(frozen=True)
class Expected:
    """The grid the caller expects: every method x dataset x seed should have a results file."""

    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]

    def cells(self) -> list[tuple[str, str, int]]:
        return [(m, d, s) for m in self.methods for d in self.datasets for s in self.seeds]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate(data: Any, path: Path) -> None:
    """Raise :class:`ResultsError` naming ``path`` and the offending key when ``data`` breaks
    results.json schema 1."""
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: top level must be a JSON object, got {type(data).__name__}")
    missing = [key for key in TOP_LEVEL if key not in data]
    if missing:
        raise ResultsError(f"{path}: missing key(s) {', '.join(missing)}")
    for key, kind in TOP_LEVEL.items():
        if not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
            raise ResultsError(f"{path}: {key!r} must be {kind.__name__}, got {data[key]!r:.60}")
    if data["schema"] != SCHEMA:
        raise ResultsError(f"{path}: schema {data['schema']} is not supported (expected {SCHEMA})")
    for section, keys in (("metrics", METRICS), ("cost", COST), ("provenance", PROVENANCE)):
        absent = [key for key in keys if key not in data[section]]
        if absent:
            raise ResultsError(f"{path}: {section} lacks {', '.join(absent)}")
    for key in METRICS:
        value = data["metrics"][key]
        if not _is_number(value) or not 0 <= value <= 100:
            raise ResultsError(
                f"{path}: metrics[{key!r}] = {value!r} is not a percentage in [0, 100]"
            )
    for key in COST:
        value = data["cost"][key]
        if value is not None and not _is_number(value):
            raise ResultsError(f"{path}: cost[{key!r}] = {value!r} is not a number or null")
    for index, group in enumerate(data["param_groups"]):
        if not isinstance(group, dict) or not {"name", "lr", "num_params"} <= set(group):
            raise ResultsError(f"{path}: param_groups[{index}] needs name, lr and num_params")


def _check_location(data: dict[str, Any], path: Path) -> None:
    """The directory layout <method>/<dataset>/seed<k>/ must agree with the file's own fields."""
    parts = path.parent.parts
    if len(parts) < 3 or not parts[-1].startswith("seed"):
        return
    found = (parts[-3], parts[-2], parts[-1])
    wanted = (data["method"], data["dataset"], f"seed{data['seed']}")
    if found != wanted:
        raise ResultsError(
            f"{path}: lies in {'/'.join(found)} but records method={wanted[0]}, "
            f"dataset={wanted[1]}, seed={data['seed']}"
        )


def read_results(path: Path) -> dict[str, Any]:
    """One validated results.json."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON ({error})") from error
    except OSError as error:
        raise ResultsError(f"{path}: cannot be read ({error})") from error
    validate(data, path)
    _check_location(data, path)
    return data


def _row(data: dict[str, Any], path: Path) -> dict[str, Any]:
    provenance = data["provenance"]
    return {
        "method": data["method"],
        "dataset": data["dataset"],
        "seed": data["seed"],
        "builder": data["builder"],
        "suite": data["suite"],
        **{key: float(data["metrics"][key]) for key in METRICS},
        **{key: data["cost"][key] for key in COST},
        "run_dir": path.parent,
        "results_path": path,
        "command": provenance["command"],
        "git_commit": str(provenance["git_commit"]),
        "git_dirty": bool(provenance["git_dirty"]),
        "manifest_sha256": str(provenance["manifest_sha256"]),
        "device": str(provenance["device"]),
        "cpu_isa": cpu_isa_setting(provenance),
        "started": str(provenance["started"]),
        "libraries": provenance["libraries"],
        "declared": data["declared"],
        "capabilities": data.get("capabilities", {}),  # absent in results written before it
        "descriptor_parts": data.get("descriptor_parts") or {},  # {part: {metric: value}}
        "param_groups": data["param_groups"],
        "config": data["config"],
        **health_columns(data.get("health"), path),
    }


def cpu_isa_setting(provenance: dict[str, Any]) -> str:
    """The run's CPU instruction-set setting (benchmark/cpu_isa.py); a run from before it was
    recorded used the CPU's own kernels."""
    isa = provenance.get("cpu", {}).get("isa") if isinstance(provenance.get("cpu"), dict) else None
    return str(isa.get("setting")) if isinstance(isa, dict) else "native (unrecorded)"


def health_columns(health: Any, path: Path) -> dict[str, Any]:
    """The run's health (results written before it have none: not degenerate, no map health)."""
    if health is None:
        return {"degenerate": False, "degenerate_reasons": [], "chance_recall@1": math.nan,
                "dead_map_fraction": math.nan, **map_columns({}),
                **localisation_columns(None)}  # fmt: skip
    if not isinstance(health, dict) or not isinstance(health.get("degenerate"), bool):
        raise ResultsError(f"{path}: 'health' must hold a boolean 'degenerate'")
    maps = health.get("maps") or {}
    dead = maps.get("dead_map_fraction")
    return {
        "degenerate": health["degenerate"],
        "degenerate_reasons": list(health.get("degenerate_reasons", [])),
        "chance_recall@1": float(health.get("chance_recall@1", math.nan)),
        "dead_map_fraction": math.nan if dead is None else 100.0 * float(dead),
        **map_columns(maps),
        **localisation_columns(health.get("localisation")),
    }


MAP_MEASURES = {  # results.json health.maps key -> column (percent where a share)
    "inactive_fraction": "map_inactive", "map_overlap": "map_overlap",
    "largest_overlap": "map_largest_overlap", "distinct_maps": "map_distinct",
    "equivariance_error": "map_equivariance",
}  # fmt: skip


def localisation_columns(block: Any) -> dict[str, float]:
    """results.json health.localisation (maps or saliency against part ground truth) as
    columns; NaN where a run has none (no maps, no ground truth, or before it existed)."""
    block = block if isinstance(block, dict) else {}
    columns = {}
    for column, (key, sub) in LOCALISATION_MEASURES.items():
        value = block.get(key) if sub is None else (block.get(key) or {}).get(sub)
        columns[column] = math.nan if value is None else float(value)
    return columns


def map_columns(maps: dict[str, Any]) -> dict[str, float]:
    """The map-health measures (NaN where a run has none, as runs from before they existed)."""
    columns = {}
    for key, column in MAP_MEASURES.items():
        value = maps.get(key)
        scale = 100.0 if key == "inactive_fraction" else 1.0
        columns[column] = math.nan if value is None else scale * float(value)
    return columns


def load_results(runs_dir: Path) -> pd.DataFrame:
    """Every results.json under ``runs_dir``, one row per run, sorted by method, dataset, seed."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ResultsError(f"{runs_dir}: runs directory does not exist")
    rows, seen = [], {}
    for path in sorted(runs_dir.rglob("results.json")):
        row = _row(read_results(path), path)
        key = (row["method"], row["dataset"], row["seed"])
        if key in seen:
            raise ResultsError(f"{path}: duplicates {seen[key]} (method, dataset, seed = {key})")
        seen[key] = path
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values(["method", "dataset", "seed"], kind="stable").reset_index(drop=True)


def load_expected(path: Path) -> Expected:
    """The expected grid from a YAML/JSON file: ``{methods, datasets, seeds}`` at the top level or
    under ``suite:`` (so the pipeline's params.yaml works as it is)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ResultsError(f"{path}: cannot read the expected grid ({error})") from error
    if isinstance(data, dict) and "suite" in data and isinstance(data["suite"], dict):
        data = data["suite"]
    if not isinstance(data, dict):
        raise ResultsError(
            f"{path}: the expected grid must be a mapping with methods/datasets/seeds"
        )
    missing = [
        key for key in ("methods", "datasets", "seeds") if not isinstance(data.get(key), list)
    ]
    if missing:
        raise ResultsError(f"{path}: the expected grid needs list(s) {', '.join(missing)}")
    if not all(isinstance(seed, int) for seed in data["seeds"]):
        raise ResultsError(f"{path}: seeds must be integers, got {data['seeds']}")
    return Expected(
        tuple(str(m) for m in data["methods"]),
        tuple(str(d) for d in data["datasets"]),
        tuple(data["seeds"]),
    )


def as_expected(value: Expected | dict[str, Any] | None) -> Expected | None:
    """Accept an :class:`Expected`, a plain ``{methods, datasets, seeds}`` dict, or None."""
    if value is None or isinstance(value, Expected):
        return value
    return Expected(
        tuple(value["methods"]), tuple(value["datasets"]), tuple(int(s) for s in value["seeds"])
    )
