"""What a run needs, built on demand: ``python benchmark/run.py method=cnenet`` in a fresh clone.

The DVC pipeline (dvc.yaml) stays the canonical way to build a run's inputs. When a run finds
one missing it runs the command of the stage that builds it, in its own process, so the files
are the ones the stage writes:

- the prepared dataset (``<dataset.root>/manifest.csv``) or its cache at the protocol's resize:
  ``python benchmark/prepare.py dataset=<name> cache_resizes=[<resize>]`` (the prepare stage;
  generated datasets only: a real dataset needs its archives first, so that is an error naming
  what to do). Other caches already there are kept.
- the pretrained backbone ``protocol.backbone.weights_file``, when it is the pretrain stage's
  output: ``python benchmark/pretrain.py protocol=<protocol> dataset=<source>`` (the pretrain
  stage), which prepares its own source dataset the same way.

Runs started together (a sweep's jobs) build each input once: the others wait for it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
log = logging.getLogger("fgor")


class MissingInputError(FileNotFoundError):
    """A run's input is missing and cannot be built here; the message says how to build it."""


def missing_reason(root: Path, resize: int | None) -> str | None:
    """Why the prepared folder ``root`` cannot serve a run (None when it can)."""
    manifest = Path(root) / "manifest.csv"
    if not manifest.is_file():
        return f"{manifest} does not exist"
    if resize is not None and not (Path(root) / f"cache_{resize}.npy").is_file():
        return f"{root} has no image cache at {resize} px (cache_{resize}.npy)"
    return None


def dataset_overrides(overrides: Sequence[str]) -> list[str]:
    """The command-line overrides of ``dataset.*`` keys (passed on to the prepare stage)."""
    return [o for o in overrides if o.lstrip("+~").startswith("dataset.")]


@contextmanager
def building(target: Path) -> Iterator[None]:
    """Held while ``target`` is built on demand: a second run that needs it (a sweep's other
    job) waits here, then finds it built."""
    lock = target.parent / f".{target.name}.on-demand.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def run_stage(script: str, arguments: list[str], why: str) -> None:
    """Run ``python benchmark/<script> <arguments>`` here, in the current directory."""
    shown = shlex.join(["python", f"benchmark/{script}", *arguments])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise MissingInputError(f"{why}; under torchrun, build it first: {shown}")
    log.info("%s: building it on demand with `%s`", why, shown)
    command = [sys.executable, str(REPO / "benchmark" / script), *arguments]
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise RuntimeError(f"`{shown}` (run because {why}) failed with exit status {code}")
    log.info("built on demand: `%s`", shown)


def ensure_dataset(
    dataset: DictConfig, choice: str, resize: int | None, overrides: Sequence[str] = ()
) -> None:
    """Prepare ``dataset`` (config group option ``choice``) when its manifest, or its cache at
    ``resize`` (None: no cache needed), is missing."""
    why = missing_reason(Path(dataset.root), resize)
    if why is None:
        return
    caches = [] if resize is None else [f"cache_resizes=[{resize}]"]
    arguments = [f"dataset={choice}", *caches, *overrides]
    if dataset.source != "generated":
        shown = shlex.join(["python", "benchmark/prepare.py", *arguments])
        raise MissingInputError(
            f"{why}. Dataset {dataset.name!r} is built from its archives, which are not "
            f"generated here: put them in data/raw (README, 'Real datasets'; or `dvc pull`), "
            f"then run `{shown}`"
        )
    with building(Path(dataset.root)):
        why = missing_reason(Path(dataset.root), resize)  # another run may have built it
        if why is not None:
            run_stage("prepare.py", arguments, f"dataset {dataset.name!r} is not prepared ({why})")


def pretrain_plan(protocol_name: str) -> tuple[Path, str]:
    """(file the pretrain stage writes for this protocol, its default source dataset), read
    from configs/pretrain.yaml."""
    spec = OmegaConf.to_container(OmegaConf.load(CONFIGS / "pretrain.yaml"))
    output = OmegaConf.create({"protocol": {"name": protocol_name}, "output": spec["output"]})
    source = next(d["dataset"] for d in spec["defaults"] if isinstance(d, dict) and "dataset" in d)
    return Path(output.output), source


def ensure_pretrained(
    weights_file: str | None,
    protocol_choice: str,
    protocol_name: str,
    *,
    source: str | None = None,
    extra: Sequence[str] = (),
) -> None:
    """Run the pretrain stage when ``weights_file`` is set, missing, and that stage's output.

    ``source``: the pretraining dataset (default: configs/pretrain.yaml's); ``extra``: further
    overrides of the pretrain config (the tests shrink it).
    """
    if not weights_file or Path(weights_file).is_file():
        return
    output, default_source = pretrain_plan(protocol_name)
    if Path(weights_file).resolve() != output.resolve():
        raise MissingInputError(
            f"protocol.backbone.weights_file {weights_file} does not exist, and the pretrain "
            f"stage (benchmark/pretrain.py) writes {output}, not that file"
        )
    arguments = [f"protocol={protocol_choice}", f"dataset={source or default_source}", *extra]
    why = f"the pretrained backbone {weights_file} (protocol.backbone.weights_file) is missing"
    with building(output):
        if not output.is_file():
            run_stage("pretrain.py", arguments, why)


def ensure_run_inputs(
    cfg: DictConfig, choices: Mapping[str, str | None], overrides: Sequence[str]
) -> None:
    """The run's prepared dataset (with the cache its protocol reads) and pretrained backbone.

    ``choices``: Hydra's config group choices (``dataset``, ``protocol``); ``overrides``: the
    command line's, whose ``dataset.*`` keys are passed on to the prepare stage.
    """
    protocol = cfg.protocol
    resize = int(protocol.image.resize) if protocol.data.use_cache else None
    dataset_choice = choices.get("dataset") or str(cfg.dataset.name)
    ensure_dataset(cfg.dataset, dataset_choice, resize, dataset_overrides(overrides))
    protocol_choice = choices.get("protocol") or str(protocol.name)
    ensure_pretrained(
        protocol.backbone.weights_file, protocol_choice, str(protocol.name),
        source=protocol.backbone.get("pretrain_source"),
    )  # fmt: skip
