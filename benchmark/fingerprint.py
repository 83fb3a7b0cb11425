"""What a checkpoint was trained with, and whether a run may go on from it.

A checkpoint stores ``fingerprint(manifest hash, config, commit, CPU instruction-set setting)``.
Before a run resumes (or evaluates) it, :func:`resume_problems` compares that with the current
run and names every difference: the data manifest, each changed config key, the instruction-set
setting (benchmark/cpu_isa.py; a checkpoint from before it was recorded counts as ``native``),
the code commit. The caller refuses
the checkpoint before it touches any file of the run directory.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

CONFIG_KEYS_SHOWN = 8


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of the config as canonical JSON (sorted keys)."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(
    manifest_sha256: str, config: dict[str, Any], git_commit: str, cpu_isa: str
) -> dict[str, str]:
    return {
        "manifest_sha256": manifest_sha256,
        "config_sha256": config_sha256(config),
        "git_commit": git_commit,
        "cpu_isa": cpu_isa,
    }


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` of nested dicts (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (absent shown as <unset>)."""
    before, after = flatten(old), flatten(new)
    lines = []
    for key in sorted(set(before) | set(after)):
        if before.get(key, "<unset>") != after.get(key, "<unset>"):
            lines.append(f"{key}: {before.get(key, '<unset>')!r} -> {after.get(key, '<unset>')!r}")
    return lines


def resume_problems(
    stored: dict[str, Any],
    current: dict[str, Any],
    stored_config: dict[str, Any],
    current_config: dict[str, Any],
    *,
    check_commit: bool = True,
) -> list[str]:
    """What differs between the checkpoint's fingerprint (and config) and the current run's.

    A checkpoint from before fingerprints existed (``stored`` empty) is compared on its config
    only. ``check_commit=False`` lets evaluation use a checkpoint trained at another commit.
    """
    problems = []
    if stored.get("manifest_sha256", current["manifest_sha256"]) != current["manifest_sha256"]:
        problems.append(
            f"the dataset manifest changed (sha256 {stored['manifest_sha256'][:12]}... -> "
            f"{current['manifest_sha256'][:12]}...): the data was prepared again or edited"
        )
    changes = config_differences(stored_config, current_config)
    if changes:
        shown = changes[:CONFIG_KEYS_SHOWN]
        more = len(changes) - len(shown)
        problems.append(
            "a different config (checkpoint -> now): "
            + "; ".join(shown)
            + (f"; and {more} more" if more else "")
        )
    isa = stored.get("cpu_isa", "native") if stored else current["cpu_isa"]
    if isa != current["cpu_isa"]:
        problems.append(
            f"the CPU instruction-set setting changed ({isa} -> {current['cpu_isa']}; "
            "FGOR_CPU_ISA, benchmark/cpu_isa.py): its numbers would not continue the same run"
        )
    commit = stored.get("git_commit", current["git_commit"])
    if check_commit and commit != current["git_commit"]:
        problems.append(f"the code changed (git commit {commit} -> {current['git_commit']})")
    return problems
