"""Fault injection: no code runs from a loaded file, nothing is silently wrong or lost.

Categories of the audit: code execution, silently wrong, lost results, unclear errors,
concurrency, provenance. Each test tampers with a finished tiny run (restored before each test)
and checks both the error (it names the file and what to do) and that nothing was touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from benchmark.config import compose_config, validate
from benchmark.train import train

REPO = Path(__file__).resolve().parent.parent
SUITE = "trust"
KEPT = (
    "results.json",
    "neighbors.npy",
    "test_labels.npy",
    "test_embeddings.npy",
    "model.safetensors",
    "config.yaml",
)
pytestmark = pytest.mark.slow


@dataclass
class Finished:
    """A finished tiny baseline run; ``config(*overrides)`` composes configs for its run_dir."""

    config: Callable[..., DictConfig]
    directory: Path
    data: Path

    @property
    def checkpoint(self) -> Path:
        return self.directory / "checkpoint.pt"


class Payload:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.fixture(scope="module")
def pristine(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("trust")
    shutil.copytree(tiny_root, base / "data" / "synthetic_tiny")
    train(_compose(base))
    shutil.copytree(base / "runs", base / "pristine_runs")
    shutil.copytree(base / "data", base / "pristine_data")
    return base


def _compose(base: Path, *overrides: str) -> DictConfig:
    return compose_config(
        [
            "dataset=synthetic_tiny", "protocol=tiny",
            f"dataset.root={base / 'data' / 'synthetic_tiny'}",
            f"runs_root={base / 'runs'}", f"suite_name={SUITE}", "progress=false", *overrides,
        ]
    )  # fmt: skip


@pytest.fixture
def finished(pristine: Path) -> Finished:
    for name in ("runs", "data"):
        shutil.rmtree(pristine / name)
        shutil.copytree(pristine / f"pristine_{name}", pristine / name)
    directory = pristine / "runs" / SUITE / "baseline" / "synthetic_tiny" / "seed1"
    return Finished(lambda *o: _compose(pristine, *o), directory, pristine / "data")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in (*KEPT, "checkpoint.pt")}


def plant_payload(checkpoint: Path, marker: Path) -> None:
    state = torch.load(checkpoint, weights_only=True)
    state["history"].append(Payload(marker))
    torch.save(state, checkpoint)


def flip_tensor_bytes(checkpoint: Path) -> None:
    """Flip bytes inside the largest tensor's data (the zip stays readable)."""
    with zipfile.ZipFile(checkpoint) as archive:
        member = max(
            (i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size
        )
    data = bytearray(checkpoint.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26 :][:4])
    start = member.header_offset + 30 + name_length + extra_length
    for offset in range(start + 16, start + 32):
        data[offset] ^= 0x5A
    checkpoint.write_bytes(bytes(data))


# -- code execution ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_malicious_checkpoint_runs_nothing_in_resume_or_evaluation(
    finished: Finished, tmp_path: Path, stage: str
) -> None:
    marker = tmp_path / "pwned"
    plant_payload(finished.checkpoint, marker)
    before = snapshot(finished.directory)
    with pytest.raises(RuntimeError, match=r"checkpoint\.pt holds objects other than tensors"):
        train(finished.config(f"stage={stage}"))
    assert not marker.exists()
    assert snapshot(finished.directory) == before


def cnenet_run(finished: Finished, marker: Path) -> Path:
    """A CNENet run directory whose checkpoint carries a payload (results copied from the
    baseline run, relabelled)."""
    directory = finished.directory.parent.parent.parent / "cnenet" / "synthetic_tiny" / "seed1"
    shutil.copytree(finished.directory, directory)
    cfg = validate(finished.config("method=cnenet"))
    (directory / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    results = json.loads((directory / "results.json").read_text())
    results.update(method="cnenet", builder="cnenet", config=OmegaConf.to_container(cfg))
    (directory / "results.json").write_text(json.dumps(results))
    plant_payload(directory / "checkpoint.pt", marker)
    return directory


def test_malicious_checkpoint_runs_nothing_in_care_maps(finished: Finished, tmp_path) -> None:
    from benchmark.care_maps import render_care_maps

    marker = tmp_path / "pwned"
    directory = cnenet_run(finished, marker)
    with pytest.raises(RuntimeError, match=r"checkpoint\.pt holds objects other than tensors"):
        render_care_maps(directory)
    assert not marker.exists()


def test_malicious_checkpoint_runs_nothing_in_the_report(finished: Finished, tmp_path) -> None:
    """The report reads results, arrays and the rendered care_maps.png, never a checkpoint."""
    from benchmark.report.__main__ import main

    marker = tmp_path / "pwned"
    directory = cnenet_run(finished, marker)
    runs = directory.parent.parent.parent
    assert main(["--runs", str(runs), "--out", str(tmp_path / "out"), "--resamples", "10"]) == 0
    assert (tmp_path / "out" / "results.md").is_file()
    assert not marker.exists()


# -- silently wrong -----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_flipped_tensor_bytes_are_detected(finished: Finished, stage: str) -> None:
    flip_tensor_bytes(finished.checkpoint)
    before = snapshot(finished.directory)
    with pytest.raises(RuntimeError, match=r"checkpoint\.pt is corrupt: member .* CRC-32"):
        train(finished.config(f"stage={stage}"))
    assert snapshot(finished.directory) == before


def test_changed_manifest_is_refused_before_any_file_is_touched(finished: Finished) -> None:
    manifest = finished.data / "synthetic_tiny" / "manifest.csv"
    manifest.write_text(manifest.read_text() + "\n")  # re-prepared: same rows, new hash
    before = snapshot(finished.directory)
    with pytest.raises(RuntimeError, match=r"dataset manifest changed .*resume=false"):
        train(finished.config())
    assert snapshot(finished.directory) == before


def test_checkpoint_of_another_cpu_instruction_set_is_refused(
    finished: Finished, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = json.loads((finished.directory / "results.json").read_text())
    assert results["runtime"]["cpu_isa"] == "avx2"  # recorded beside threads and memory format
    assert results["provenance"]["cpu"]["isa"]["setting"] == "avx2"
    monkeypatch.setenv("FGOR_CPU_ISA", "native")  # as if the run had been started opted out
    before = snapshot(finished.directory)
    with pytest.raises(RuntimeError, match=r"CPU instruction-set setting changed \(avx2 -> native"):
        train(finished.config())
    assert snapshot(finished.directory) == before


def test_changed_setting_is_refused_up_front_and_resume_false_starts_over(
    finished: Finished,
) -> None:
    before = snapshot(finished.directory)
    with pytest.raises(RuntimeError, match=r"protocol\.optimizer\.lr: 0\.03 -> 0\.1.*resume=false"):
        train(finished.config("protocol.optimizer.lr=0.1"))
    assert snapshot(finished.directory) == before  # results, .npy and config.yaml kept
    train(finished.config("protocol.optimizer.lr=0.1", "resume=false", "stage=train"))
    assert not (finished.directory / "results.json").exists()  # they described the old model
    assert "lr: 0.1" in (finished.directory / "config.yaml").read_text()


def test_changed_code_is_refused_on_resume_but_evaluation_records_both(
    finished: Finished, monkeypatch
) -> None:
    trained_at = json.loads((finished.directory / "results.json").read_text())["provenance"]
    for module in ("checkpoint", "results", "provenance"):
        monkeypatch.setattr(f"benchmark.{module}.git_state", lambda: ("f" * 40, False))
    before = snapshot(finished.directory)
    with pytest.raises(RuntimeError, match=r"code changed \(git commit \w+ -> f{40}\)"):
        train(finished.config("stage=train"))
    assert snapshot(finished.directory) == before
    results = train(finished.config("stage=evaluate"))
    assert results["provenance"]["git_commit"] == "f" * 40
    assert results["provenance"]["train_git_commit"] == trained_at["git_commit"]


# -- lost ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated"),
        (lambda p: p.write_bytes(os.urandom(4096)), "truncated or not a PyTorch checkpoint"),
        (lambda p: torch.save({"epoch": 2}, p), "lacks model"),
    ],
    ids=["truncated", "random-bytes", "foreign"],
)
def test_unreadable_checkpoint_keeps_the_finished_results(
    finished: Finished, damage, message: str
) -> None:
    damage(finished.checkpoint)
    before = snapshot(finished.directory)
    with pytest.raises(RuntimeError, match=rf"{finished.checkpoint}.*{message}"):
        train(finished.config())
    assert snapshot(finished.directory) == before


def test_a_fresh_start_that_fails_in_its_first_epoch_keeps_the_old_results(
    finished: Finished, monkeypatch
) -> None:
    from benchmark.train import NonFiniteLossError
    from methods.baseline import CrossEntropyCriterion

    monkeypatch.setattr(
        CrossEntropyCriterion, "forward", lambda self, output, labels: {"ce": torch.tensor(1e400)}
    )
    before = snapshot(finished.directory)
    with pytest.raises(NonFiniteLossError):
        train(finished.config("resume=false"))
    assert snapshot(finished.directory) == before


def test_disk_full_names_the_file_and_keeps_the_previous_checkpoint(
    finished: Finished, monkeypatch
) -> None:
    def full_disk(state, path) -> None:
        Path(path).write_bytes(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1123008")

    monkeypatch.setattr(torch, "save", full_disk)
    before = snapshot(finished.directory)
    with pytest.raises(
        OSError, match=rf"no space left on the device writing {finished.checkpoint}"
    ):
        train(finished.config("resume=false", "stage=train"))
    assert snapshot(finished.directory) == before
    assert not [p for p in finished.directory.iterdir() if p.name.endswith(".tmp")]


def test_enospc_on_a_text_write_names_the_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch
) -> None:
    import errno

    from benchmark.atomic import write_atomic_text

    target = tmp_path / "results.json"
    target.write_text("old")

    def partial(self: Path, text: str) -> None:
        with open(self, "w") as handle:
            handle.write(text[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", partial)
    with pytest.raises(OSError, match=rf"writing {target} .*MiB free") as caught:
        write_atomic_text(target, "new results")
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


# -- concurrency ---------------------------------------------------------------------------------


def test_a_run_directory_held_by_a_live_process_is_refused(finished: Finished) -> None:
    lock = finished.directory / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; "
         f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
         "os.write(fd, b'pid %d' % os.getpid()); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(finished.directory)
        with pytest.raises(
            RuntimeError, match=rf"{finished.directory} is in use .*pid {holder.pid}"
        ):
            train(finished.config("resume=false"))
        assert snapshot(finished.directory) == before
    finally:
        holder.kill()
        holder.wait()
    train(finished.config("stage=evaluate"))  # the dead holder's lock is taken over


def test_stale_lock_of_a_dead_process_is_taken_over_and_a_second_holder_refused(
    tmp_path: Path,
) -> None:
    from benchmark.run_lock import RunLockedError, run_lock

    (tmp_path / ".lock").write_text("host elsewhere pid 999999 python benchmark/run.py")
    with run_lock(tmp_path, "first"):
        assert f"pid {os.getpid()} first" in (tmp_path / ".lock").read_text()
        with (
            pytest.raises(RunLockedError, match=rf"pid {os.getpid()} first"),
            run_lock(tmp_path, "second"),
        ):
            pass
    with run_lock(tmp_path):  # released on exit
        pass


# -- unclear errors: config typos ------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "config", "expected"),
    [
        (["protocol.optimiser.lr=1"], "config", r"protocol\.optimiser \(did you mean 'optimizer'"),
        (["method.foo=1"], "config", r"method\.foo; valid keys: builder, .*name"),
        (["dataset=cub", "dataset.rot=x"], "prepare", r"did you mean 'root'.*valid keys: archives"),
    ],
)
def test_typo_without_plus_lists_valid_keys_and_suggests(
    overrides: list[str], config: str, expected: str
) -> None:
    from benchmark.config_hints import override_hint

    hint = override_hint(overrides, config)
    assert hint is not None
    assert re.search(expected, hint), hint


def test_typo_with_plus_lists_valid_keys_and_suggests() -> None:
    from benchmark.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"optimiser \(did you mean 'optimizer'\?\); valid keys: "
    ):
        validate(compose_config(["+protocol.optimiser.lr=1"]))


def test_a_multirun_typo_is_caught_on_its_first_job(monkeypatch) -> None:
    from benchmark.config_hints import exit_on_config_typo

    with pytest.raises(SystemExit, match=r"protocol\.optimiser \(did you mean 'optimizer'"):
        exit_on_config_typo(["-m", "seed=1,2", "protocol.optimiser.lr=0.1,0.2"], "config")
    exit_on_config_typo(["-m", "seed=range(1,3)", "protocol.optimizer.lr=0.1,0.2"], "config")
    exit_on_config_typo(["--cfg", "job", "protocol.optimiser.lr=1"], "config")  # left to Hydra


def test_run_script_prints_the_hint_instead_of_hydras_struct_error() -> None:
    done = subprocess.run(
        [sys.executable, "benchmark/run.py", "protocol.optimiser.lr=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "did you mean 'optimizer'" in done.stderr and "valid keys" in done.stderr


# -- provenance ---------------------------------------------------------------------------------


def test_results_keep_the_training_command_and_peak_memory(finished: Finished, monkeypatch) -> None:
    from benchmark import provenance

    trained = torch.load(finished.checkpoint, weights_only=True)["training"]
    monkeypatch.setattr(provenance, "_COMMAND", ["python", "benchmark/run.py", "stage=evaluate"])
    results = train(finished.config("stage=evaluate"))
    assert (
        results["provenance"]["command"]
        == trained["command"]
        != results["provenance"]["eval_command"]
    )
    assert results["provenance"]["eval_command"].endswith("stage=evaluate")
    assert results["provenance"]["started"] == trained["started"]
    assert results["cost"]["peak_memory_mb"] == trained["peak_memory_mb"] > 0
    assert results["cost"]["eval_peak_memory_mb"] > 0


# -- the report and the bench scripts -------------------------------------------------------


def test_report_names_a_truncated_neighbors_file(finished: Finished, tmp_path, capsys) -> None:
    from benchmark.report.__main__ import main

    neighbors = finished.directory / "neighbors.npy"
    neighbors.write_bytes(neighbors.read_bytes()[:100])
    runs = finished.directory.parent.parent.parent
    assert main(["--runs", str(runs), "--out", str(tmp_path / "out"), "--resamples", "10"]) == 2
    assert f"{neighbors}: truncated" in capsys.readouterr().err


def test_bench_metrics_runs_without_faiss_when_the_reference_is_skipped(
    tmp_path: Path, monkeypatch
) -> None:
    from importlib.metadata import PackageNotFoundError

    from benchmark.perf import bench_metrics

    real_version = bench_metrics.version

    def version(name: str) -> str:
        if name == "faiss-cpu":
            raise PackageNotFoundError(name)
        return real_version(name)

    def worker(name: str, args) -> dict:
        metrics = {"recall@1": 1.0, "map@r": 1.0, "r_precision": 1.0}
        return {
            "seconds": 1.0,
            "cpu_seconds": 1.0,
            "peak_rss_increase_mib": 1.0,
            "metrics": metrics,
        }

    monkeypatch.setattr(bench_metrics, "version", version)
    monkeypatch.setattr(bench_metrics, "run_worker", worker)
    out = tmp_path / "metrics.json"
    bench_metrics.main(["--n", "50", "--d", "4", "--no-reference", "--out", str(out)])
    assert json.loads(out.read_text())["versions"]["faiss-cpu"] == "not installed"


def test_bench_throughput_json_is_written_atomically(tmp_path: Path, monkeypatch) -> None:
    import types

    from benchmark.perf import bench_throughput

    run = types.SimpleNamespace(device=torch.device("cpu"))
    monkeypatch.setattr(bench_throughput, "prepare", lambda *a, **k: None)
    monkeypatch.setattr(bench_throughput, "prepare_run", lambda cfg: run)
    monkeypatch.setattr(bench_throughput, "runtime_settings", lambda run: {})
    monkeypatch.setattr(bench_throughput, "loader_alone", lambda *a: 1.0)
    figures = {f"{k}_images_per_second": 1.0 for k in ("bare", "harness", "loop")}
    row = {**figures, "peak_mb": 1.0, "loop_vs_bare": 1.0, "harness_vs_bare": 1.0}
    monkeypatch.setattr(bench_throughput, "measure", lambda *a: row)
    out = tmp_path / "throughput.json"
    out.write_text("previous")

    def interrupted(self: Path, text: str) -> None:
        with open(self, "w") as handle:
            handle.write(text[:5])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    monkeypatch.setattr(sys, "argv", ["bench", "--methods", "baseline", "--batches", "8",
                                      "--protocol", "tiny", "--out", str(out)])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        bench_throughput.main()
    assert out.read_bytes() == b"previous" and sorted(tmp_path.iterdir()) == [out]


# -- datasets -------------------------------------------------------------------------------


def _prepare_with(tmp_path: Path, monkeypatch, damage, cache_resizes: list[int]) -> None:
    from benchmark import prepare as prepare_module

    generate = prepare_module.GENERATORS["marks"]

    def damaged(source: Path, **options) -> None:
        generate(source, **options)
        images = sorted((Path(source) / "CUB_200_2011" / "images").rglob("*.*"))
        damage(images[3])

    monkeypatch.setitem(prepare_module.GENERATORS, "marks", damaged)
    cfg = compose_config(["dataset=synthetic_tiny"], config_name="prepare")
    cfg.dataset.root = str(tmp_path / "prepared")
    prepare_module.prepare(
        cfg.dataset, raw_dir=tmp_path / "raw", cache_resizes=cache_resizes, workers=1
    )


def test_missing_cub_image_fails_prepare_without_a_cache(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"not in its archives: CUB_200_2011/images/\S+") as caught:
        _prepare_with(tmp_path, monkeypatch, lambda path: path.unlink(), cache_resizes=[])
    assert "staging" not in str(caught.value).replace("staging folder removed", "")
    assert not (tmp_path / "prepared").exists()


def test_corrupt_image_error_names_the_path_in_the_archive(tmp_path: Path, monkeypatch) -> None:
    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:40])

    with pytest.raises(OSError, match=r"^CUB_200_2011/images/\S+: cannot decode") as caught:
        _prepare_with(tmp_path, monkeypatch, truncate, cache_resizes=[40])
    assert ".staging" not in str(caught.value)
    assert not (tmp_path / "prepared").exists()


# -- units --------------------------------------------------------------------------------------


def test_npy_holding_pickled_objects_is_refused_without_running_them(tmp_path: Path) -> None:
    import numpy as np

    from benchmark.safe_io import ArrayFileError, load_npy

    marker, path = tmp_path / "pwned", tmp_path / "neighbors.npy"
    np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ArrayFileError, match=rf"{path}: truncated, corrupt or not a plain"):
        load_npy(path)
    assert not marker.exists()


def test_resume_problems_name_every_difference() -> None:
    from benchmark.fingerprint import config_differences, fingerprint, resume_problems

    old = {"protocol": {"optimizer": {"lr": 0.03}, "epochs": 2}, "seed": 1}
    new = {"protocol": {"optimizer": {"lr": 0.1}}, "seed": 1, "extra": True}
    assert config_differences(old, new) == [
        "extra: '<unset>' -> True",
        "protocol.epochs: 2 -> '<unset>'",
        "protocol.optimizer.lr: 0.03 -> 0.1",
    ]
    stored = fingerprint("a" * 64, old, "c1", "avx2")
    current = fingerprint("b" * 64, new, "c2", "native")
    problems = resume_problems(stored, current, old, new)
    assert [p.split(" ")[1] for p in problems] == ["dataset", "different", "CPU", "code"]
    assert "(avx2 -> native;" in problems[2]
    assert resume_problems(stored, current, old, new, check_commit=False)[-1].startswith("the CPU")
    assert resume_problems({}, current, new, new) == []  # a checkpoint from before fingerprints
    # a checkpoint from before the setting was recorded ran unpinned: not resumed when pinned
    older = {k: v for k, v in fingerprint("b" * 64, new, "c2", "avx2").items() if k != "cpu_isa"}
    pinned = fingerprint("b" * 64, new, "c2", "avx2")
    assert [p.split(" ")[1] for p in resume_problems(older, pinned, new, new)] == ["CPU"]


def test_pretrain_export_loads_the_checkpoint_through_the_safe_loader(
    finished: Finished, tmp_path: Path
) -> None:
    from benchmark.checkpoint_weights import load_model_state

    assert load_model_state(finished.checkpoint)  # the model's tensors
    marker = tmp_path / "pwned"
    plant_payload(finished.checkpoint, marker)
    with pytest.raises(RuntimeError, match=r"checkpoint\.pt holds objects other than tensors"):
        load_model_state(finished.checkpoint)
    assert not marker.exists()
    flip_tensor_bytes(finished.checkpoint)
    with pytest.raises(RuntimeError, match=r"checkpoint\.pt is corrupt: member .* CRC-32"):
        load_model_state(finished.checkpoint)


def test_unknown_method_argument_or_name_suggests_the_closest() -> None:
    from benchmark.cell import build_run_method
    from benchmark.config import run_settings
    from methods.registry import get_builder

    overrides = ["method=cnenet", "+method.num_map=3", "protocol=tiny", "dataset=synthetic_tiny"]
    settings = run_settings(compose_config(overrides))
    with pytest.raises(
        TypeError, match=r"\['num_map'\] \[num_map \(did you mean 'num_maps'\?\)\]; it accepts: "
    ):
        build_run_method(settings, num_classes=4)
    with pytest.raises(KeyError, match=r"'cnennet' \(did you mean 'cnenet'\?\); registered"):
        get_builder("cnennet")
