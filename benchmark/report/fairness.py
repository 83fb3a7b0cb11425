"""Fairness and provenance: the resolved configs diffed across methods, each method's declared
changes and parameter groups, and where every run came from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from benchmark.report import runfiles
from benchmark.report.grid import Grid
from benchmark.report.tables import Column, Table

# per-run bookkeeping, expected to differ between runs; `method` is method-specific by definition
METHOD_KEYS = ("method", "tuned")  # the method's own settings and its tuned knobs
BOOKKEEPING = ("seed", "run_dir", "runs_root", "stage", "resume", "progress")
NOT_SHARED = METHOD_KEYS + BOOKKEEPING
MANIFEST_KEY = "data manifest sha256 (provenance)"


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """``{"protocol": {"epochs": 12}}`` -> ``{"protocol.epochs": "12"}`` (lists kept whole)."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for key in sorted(value, key=str):
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: json.dumps(value, sort_keys=True, default=str)}


def shared_settings(config: dict[str, Any], manifest_sha256: str) -> dict[str, str]:
    """Everything in a resolved config that every method must share, plus the data's hash."""
    settings = flatten({k: v for k, v in config.items() if k not in NOT_SHARED})
    settings[MANIFEST_KEY] = manifest_sha256
    return settings


@dataclass(frozen=True)
class Difference:
    dataset: str
    key: str
    values: dict[str, list[str]]  # value -> the runs ("method seed k") holding it


def protocol_differences(grid: Grid) -> list[Difference]:
    """Every shared setting that is not identical across all runs of a dataset."""
    differences = []
    for dataset in grid.datasets:
        runs = grid.results[grid.results["dataset"] == dataset]
        settings = [
            (f"{m} s{s}", shared_settings(c, h))
            for m, s, c, h in zip(
                runs["method"], runs["seed"], runs["config"], runs["manifest_sha256"], strict=True
            )
        ]
        keys = sorted({key for _, flat in settings for key in flat})
        for key in keys:
            values: dict[str, list[str]] = {}
            for run, flat in settings:
                values.setdefault(flat.get(key, "(absent)"), []).append(run)
            if len(values) > 1:
                differences.append(Difference(dataset, key, dict(sorted(values.items()))))
    return differences


def runs_by_method(runs: list[str]) -> str:
    """``["a s1", "a s2", "b s1"]`` -> ``a (s1, s2); b (s1)``."""
    grouped: dict[str, list[str]] = {}
    for run in runs:
        method, seed = run.rsplit(" ", 1)
        grouped.setdefault(method, []).append(seed)
    return "; ".join(f"`{m}` ({', '.join(seeds)})" for m, seeds in grouped.items())


def difference_table(differences: list[Difference]) -> Table:
    table = Table(
        "protocol-differences",
        "Differences in the shared protocol (must be empty for a fair comparison)",
        [Column("Dataset"), Column("Setting"), Column("Value"), Column("Runs")],
    )
    for diff in differences:
        for index, (value, runs) in enumerate(diff.values.items()):
            first = index == 0
            table.add(
                diff.dataset if first else "",
                f"`{diff.key}`" if first else "",
                f"`{value[:80]}`",
                runs_by_method(runs),
                kind="alert",
                group_start=first,
            )
    return table


def protocol_outliers(differences: list[Difference]) -> set[tuple[str, str]]:
    """(method, dataset) pairs with a run off the most common value of a differing setting
    (every run involved when no value is the most common)."""
    outliers = set()
    for diff in differences:
        counts = [len(runs) for runs in diff.values.values()]
        common = [v for v, runs in diff.values.items() if len(runs) == max(counts)]
        for value, runs in diff.values.items():
            if len(common) > 1 or value != common[0]:
                outliers.update((run.rsplit(" ", 1)[0], diff.dataset) for run in runs)
    return outliers


def difference_summary(differences: list[Difference], limit: int = 5) -> str:
    """One line for the top of the report: the first ``limit`` differences, then a count."""
    parts = []
    for diff in differences[:limit]:
        values = "; ".join(
            f"{value[:40]} in {runs_by_method(runs)}" for value, runs in diff.values.items()
        )
        parts.append(f"`{diff.key}` on {diff.dataset} ({values})")
    if len(differences) > limit:
        parts.append(f"and {len(differences) - limit} more")
    return "; ".join(parts)


def shared_protocol_table(grid: Grid) -> Table:
    """The protocol every method ran under (of the first run; differences are listed apart)."""
    table = Table(
        "protocol", "The shared protocol (resolved config)", [Column("Setting"), Column("Value")]
    )
    if grid.results.empty:
        return table
    first = grid.results.iloc[0]
    for key, value in flatten(first["config"].get("protocol", {}), "protocol").items():
        table.add(f"`{key}`", f"`{value.strip(chr(34))}`")
    table.notes.append(f"From `{first['method']}` on {first['dataset']}, seed {first['seed']}.")
    return table


def _applied(group: dict[str, Any]) -> str:
    """`` (x10)``: the multiplier applied to a parameter group (absent in older results)."""
    return f" (x{group['lr_multiplier']:g})" if "lr_multiplier" in group else ""


def parameter_groups_table(grid: Grid) -> Table:
    """Each method's parameter groups: learning rate, multiplier, weight decay, size."""
    table = Table(
        "parameter-groups",
        "Parameter groups and their learning rates",
        [Column("Method"), Column("Parameter groups")],
    )
    for method in grid.methods:
        runs = grid.results[grid.results["method"] == method]
        if runs.empty:
            continue
        groups = "; ".join(
            f"{g['name']}: lr {g['lr']:g}{_applied(g)}, wd {g.get('weight_decay', 0):g}, "
            f"{g['num_params'] / 1e6:.3g} M"
            for g in runs.iloc[0]["param_groups"]
        )
        table.add(f"`{method}`", groups or "none (not trained)")
    table.notes.append(
        "From each method's first run (parameter counts depend on the dataset's classes). "
        "x N: the learning-rate multiplier applied to the group, relative to the protocol's "
        "base rate (new layers: the protocol's new_layer_lr_multiplier x the method's ratio, "
        "times the method's tuned LR scale)."
    )
    table.notes += unusual_rates(grid)
    return table


UNUSUAL_MULTIPLIER = 100.0


def unusual_rates(grid: Grid) -> list[str]:
    """A sentence for every group whose rate is far above the new layers' (x >= 100): which
    method key sets it, so `lr 900 (x1e+06)` does not read as a typo."""
    notes = []
    for method in grid.methods:
        runs = grid.results[grid.results["method"] == method]
        if runs.empty:
            continue
        config = runs.iloc[0]["config"]
        ratios = {k: v for k, v in config.get("method", {}).items() if k.endswith("_lr_ratio")}
        for group in runs.iloc[0]["param_groups"]:
            if group.get("lr_multiplier", 0) >= UNUSUAL_MULTIPLIER:
                source = ", ".join(f"`method.{k}` = {v:g}" for k, v in ratios.items())
                notes.append(
                    f"`{method}` {group['name']}: x{group['lr_multiplier']:g} is intended, the "
                    f"protocol's new-layer multiplier times {source or 'the method'} (see the "
                    "method's YAML for its source)."
                )
    return notes


def provenance_table(grid: Grid) -> Table:
    table = Table(
        "provenance",
        "Provenance of every run",
        [
            Column("Method"),
            Column("Dataset"),
            Column("Seed", "r"),
            Column("Files", latex=False, nowrap=True),
            Column("Command", latex=False),
            Column("Commit", nowrap=True),
            Column("Config sha256", nowrap=True),
            Column("Device"),
            Column("Started", nowrap=True),
        ],
    )
    order = {
        (m, d): i for i, (m, d) in enumerate((m, d) for m in grid.methods for d in grid.datasets)
    }
    runs = grid.results.assign(
        order=[
            order[(m, d)]
            for m, d in zip(grid.results["method"], grid.results["dataset"], strict=True)
        ]
    )
    for row in runs.sort_values(["order", "seed"], kind="stable").itertuples(index=False):
        files = []
        for label, name in runfiles.COPIED:
            target = runfiles.link(row.method, row.dataset, row.seed, row.run_dir, name)
            if target:
                files.append(f"[{label}]({target})")
            elif name not in runfiles.OPTIONAL:
                files.append(f"{label} (not copied)")
        commit = row.git_commit[:10] + (" (dirty)" if row.git_dirty else "")
        table.add(
            f"`{row.method}`",
            row.dataset,
            str(row.seed),
            " · ".join(files),
            f"`{row.command}`",
            f"`{commit}`",
            f"`{runfiles.config_hash(row.run_dir)}`",
            row.device,
            row.started[:19].replace("T", " "),
        )
    table.notes.append(
        "Files: copies of each run's small files under this report's runs/<method>/<dataset>/"
        "seed<k>/ (checkpoints, embeddings and neighbour arrays stay in the run directory). "
        "Config sha256: first 12 hex digits of the hash of the run's resolved config.yaml."
    )
    return table


def library_table(grid: Grid) -> Table:
    """Library versions; one row per library, every distinct version with its runs."""
    table = Table(
        "libraries", "Library versions", [Column("Library"), Column("Version"), Column("Runs")]
    )
    versions: dict[str, dict[str, int]] = {}
    for libraries in grid.results["libraries"]:
        for name, version in sorted(libraries.items()):
            versions.setdefault(name, {}).setdefault(str(version), 0)
            versions[name][str(version)] += 1
    total = len(grid.results)
    for name, counts in sorted(versions.items()):
        for version, count in sorted(counts.items()):
            table.add(
                name,
                f"`{version}`",
                "all" if count == total else f"{count} of {total}",
                kind="alert" if len(counts) > 1 else "",
            )
    return table


def missing_table(grid: Grid) -> Table:
    table = Table(
        "missing",
        "Expected runs without a results file",
        [Column("Method"), Column("Dataset"), Column("Missing seeds")],
    )
    grouped: dict[tuple[str, str], list[int]] = {}
    for method, dataset, seed in grid.missing_cells():
        grouped.setdefault((method, dataset), []).append(seed)
    for (method, dataset), seeds in grouped.items():
        table.add(f"`{method}`", dataset, ", ".join(str(s) for s in seeds), kind="missing")
    return table
