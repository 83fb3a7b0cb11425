"""The pretrain stage: ``python benchmark/pretrain.py`` (configs/pretrain.yaml).

The embedded default's analogue of ImageNet pretraining. The protocol's backbone is trained with
cross-entropy (the ``baseline`` method) on every image of a generated *source* dataset whose
classes are disjoint from the benchmark's (configs/dataset/synthetic_source.yaml), then its
weights are written as one safetensors file, ``output``, which the embedded protocol loads through
``protocol.backbone.weights_file`` exactly as the paper protocol loads ImageNet weights.
Deterministic: same code, config and machine -> the same file. The training run itself lives in
``run_dir`` (resumable like any run); the file is written atomically at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmark import cpu_isa
from benchmark.checkpoint_weights import load_model_state, read_weights_metadata, save_weights_file
from benchmark.config_hints import exit_on_config_typo
from benchmark.data.manifest import file_sha256
from benchmark.on_demand import dataset_overrides, ensure_dataset
from benchmark.provenance import command_line, git_state, set_command
from benchmark.train import train

BACKBONE_PREFIX = "backbone.body."
METADATA_KEY = "fgor_bench"
TIMING_COLUMNS = ("images_per_second", "seconds")


def read_metadata(path: Path) -> dict[str, str]:
    """The provenance a pretrained backbone file carries (see :func:`pretrain`)."""
    return read_weights_metadata(path, METADATA_KEY, "benchmark/pretrain.py")


def last_epoch_summary(history: list[str]) -> dict[str, str]:
    """The last row of history.csv and its columns, timing (seconds, images/s) left out, so the
    file is the same bytes for the same code, config and machine."""
    if len(history) < 2:
        return {"last_epoch": "", "history_columns": history[0] if history else ""}
    columns, values = history[0].split(","), history[-1].split(",")
    keep = [i for i, column in enumerate(columns) if column not in TIMING_COLUMNS]
    return {
        "last_epoch": ",".join(values[i] for i in keep),
        "history_columns": ",".join(columns[i] for i in keep),
    }


def export_backbone(checkpoint: Path, output: Path, metadata: dict[str, str]) -> int:
    """Write the backbone tensors of a run's checkpoint to ``output``; returns their count."""
    state = load_model_state(checkpoint)
    tensors = {
        key[len(BACKBONE_PREFIX) :]: value.contiguous()
        for key, value in state.items()
        if key.startswith(BACKBONE_PREFIX)
    }
    if not tensors:
        raise ValueError(f"{checkpoint}: no backbone tensors ({BACKBONE_PREFIX}*) in the model")
    save_weights_file(output, tensors, metadata, METADATA_KEY)
    return len(tensors)


def pretrain(cfg: DictConfig) -> Path:
    """Train (or resume) the pretraining run, then export its backbone to ``cfg.output``."""
    if cfg.protocol.backbone.weights_file or cfg.protocol.backbone.pretrained:
        raise ValueError(
            "pretraining starts from random init: protocol.backbone.pretrained must be false "
            "and protocol.backbone.weights_file null"
        )
    train(cfg)
    run_dir = Path(cfg.run_dir)
    history = (run_dir / "history.csv").read_text().splitlines()
    commit, _ = git_state()
    metadata = {
        "format": "fgor-bench pretrained backbone",
        "backbone": str(cfg.protocol.backbone.name),
        "source_dataset": str(cfg.dataset.name),
        "source_manifest_sha256": file_sha256(Path(cfg.dataset.root) / "manifest.csv"),
        "epochs": str(cfg.protocol.epochs),
        **last_epoch_summary(history),
        "command": command_line(),
        "git_commit": commit,
        "cpu_isa": cpu_isa.setting(),  # same bytes on every CPU of the kind when pinned
        "config": json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True),
    }
    output = Path(cfg.output)
    count = export_backbone(run_dir / "checkpoint.pt", output, metadata)
    print(f"wrote {output} ({count} tensors, sha256 {file_sha256(output)})")
    return output


@hydra.main(config_path="../configs", config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    set_command(["python", "benchmark/pretrain.py", *hydra_cfg.overrides.task])
    resize = cfg.protocol.image.resize if cfg.protocol.data.use_cache else None
    overrides = dataset_overrides(hydra_cfg.overrides.task)
    ensure_dataset(cfg.dataset, hydra_cfg.runtime.choices["dataset"], resize, overrides)
    pretrain(cfg)


if __name__ == "__main__":
    exit_on_config_typo(sys.argv[1:], "pretrain")  # "did you mean" before Hydra's own error
    main()
