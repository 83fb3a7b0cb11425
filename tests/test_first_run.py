"""A first run that just works: inputs built on demand by their stage's own command (the same
bytes), "did you mean" for names and keys, and ``--help`` documenting the run keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmark.config import CONFIG_DIR, compose_config
from benchmark.config_hints import exit_on_config_typo, group_hint
from benchmark.on_demand import MissingInputError, ensure_dataset, ensure_pretrained

REPO = Path(__file__).resolve().parent.parent


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("method=cnent", "cnenet"),
        ("dataset=synthtic_tiny", "synthetic_tiny"),
        ("protocol=embeded", "embedded"),
        ("suite=defalt", "default"),
        ("+tune=papr", "paper"),
    ],
)
def test_an_unknown_group_option_suggests_the_closest(override: str, suggestion: str) -> None:
    hint = group_hint(["seed=2", override])
    assert hint is not None and f"did you mean {suggestion!r}?" in hint, hint
    group = override.lstrip("+").split("=")[0]
    assert f"valid {group} names (configs/{group}/): " in hint
    with pytest.raises(SystemExit, match="did you mean"):
        exit_on_config_typo([override], "pipeline" if group == "suite" else "config")


def test_valid_options_and_other_keys_pass() -> None:
    assert group_hint(["method=cnenet", "dataset=cub", "protocol.epochs=2", "seed=3"]) is None
    exit_on_config_typo(["method=cnenet", "protocol=tiny"], "config")  # no exit


def test_an_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(SystemExit, match=r"protocol\.optimiser \(did you mean 'optimizer'\?\)"):
        exit_on_config_typo(["method=cnenet", "protocol.optimiser.lr=0.1"], "config")


def test_help_documents_the_run_keys() -> None:
    """``python benchmark/run.py --help`` prints configs/hydra/help/run.yaml (composed here:
    a subprocess would import torch for it)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    shown = OmegaConf.to_container(cfg.hydra.help)  # unresolved
    assert "${hydra.help.header}" in shown["template"]
    assert "${hydra.help.footer}" in shown["template"]
    assert "$APP_CONFIG_GROUPS" in shown["template"]  # every method, dataset and protocol name
    for key in ("method=", "dataset=", "protocol=", "seed=", "suite_name=", "run_dir=",
                "stage=all|train|evaluate", "resume=", "save_embeddings=", "progress=",
                "tuned.lr_scale="):  # fmt: skip
        assert key in shown["header"] + shown["footer"], key


def test_a_missing_dataset_is_prepared_as_the_stage_prepares_it(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The on-demand folder is the prepare stage's, byte for byte (the session's tiny_root
    was prepared in-process); a second resize adds its cache and keeps the first."""
    monkeypatch.chdir(tmp_path)
    dataset = compose_config(["dataset=synthetic_tiny"]).dataset
    ensure_dataset(dataset, "synthetic_tiny", 40)
    built = tmp_path / dataset.root
    assert tree(built) == tree(tiny_root)
    ensure_dataset(dataset, "synthetic_tiny", 48)
    assert (built / "cache_40.npy").read_bytes() == (tiny_root / "cache_40.npy").read_bytes()
    assert (built / "cache_48.npy").is_file()
    before = tree(built)
    ensure_dataset(dataset, "synthetic_tiny", 48)  # present: nothing runs
    assert tree(built) == before


def test_a_missing_real_dataset_says_what_to_run(tmp_path: Path) -> None:
    dataset = compose_config(["dataset=cub", f"dataset.root={tmp_path / 'cub'}"]).dataset
    with pytest.raises(MissingInputError, match=r"archives.*data/raw.*prepare\.py dataset=cub"):
        ensure_dataset(dataset, "cub", 256)
    assert not (tmp_path / "cub").exists()


def test_a_weights_file_the_pretrain_stage_does_not_write_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r"pretrain stage .* writes"):
        ensure_pretrained(str(tmp_path / "mine.safetensors"), "embedded", "embedded")
    ensure_pretrained(None, "tiny", "tiny")  # no weights file: nothing to do


@pytest.mark.slow
def test_missing_pretrained_weights_are_the_pretrain_stages_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On demand (which prepares the source set on demand too) vs the prepare and pretrain
    stages' commands run by hand in another folder: the same file."""
    weights = "data/pretrained/tiny_backbone.safetensors"
    shrink = ["protocol.epochs=1"]
    on_demand, by_hand = tmp_path / "on_demand", tmp_path / "by_hand"
    on_demand.mkdir()
    by_hand.mkdir()
    monkeypatch.chdir(on_demand)
    ensure_pretrained(weights, "tiny", "tiny", source="synthetic_tiny", extra=shrink)
    for script, *arguments in (
        ("prepare.py", "dataset=synthetic_tiny", "cache_resizes=[40]"),
        ("pretrain.py", "protocol=tiny", "dataset=synthetic_tiny", *shrink),
    ):
        command = [sys.executable, str(REPO / "benchmark" / script), *arguments]
        subprocess.run(command, cwd=by_hand, check=True, capture_output=True, timeout=600)
    assert (on_demand / weights).read_bytes() == (by_hand / weights).read_bytes()
