"""Multi-process training on CPU (gloo): two ranks with half the batch each match one process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.utils.distributed import (
    DistributedLossWrapper,
    DistributedMinerWrapper,
)
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from benchmark.distributed import (
    Objective,
    ShardedBatchSampler,
    World,
    gather_embeddings,
    local_batch_size,
    shard_range,
)
from benchmark.sampler import ClassBalancedBatchSampler, ShuffledBatchSampler
from methods.registry import ModelOutput

REPO = Path(__file__).resolve().parent.parent


# --- samplers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [2, 4])
def test_sharded_batches_partition_the_global_batches(world_size: int) -> None:
    labels = np.repeat(np.arange(10), 7)
    make = lambda: ClassBalancedBatchSampler(labels, 4, 4, epoch_size=len(labels), seed=3)  # noqa: E731
    single = make()
    single.set_epoch(2)
    shards = [ShardedBatchSampler(make(), World(r, world_size)) for r in range(world_size)]
    for shard in shards:
        shard.set_epoch(2)
        assert len(shard) == len(single)
    for step, whole in enumerate(single):
        parts = [list(shard)[step] for shard in shards]
        assert all(len(p) == 16 // world_size for p in parts)
        assert [i for part in parts for i in part] == whole  # in rank order: the one-process batch


def test_shuffled_batches_depend_on_seed_and_epoch_only() -> None:
    first = ShuffledBatchSampler(50, 8, seed=1)
    again = ShuffledBatchSampler(50, 8, seed=1)
    first.set_epoch(3)
    again.set_epoch(3)
    assert list(first) == list(again)
    assert len(first) == 6 and all(len(b) == 8 for b in first)
    flat = [i for batch in first for i in batch]
    assert len(set(flat)) == 48  # no repeats; the last partial batch is dropped
    again.set_epoch(4)
    assert list(first) != list(again)


def test_global_batch_must_split_evenly() -> None:
    assert local_batch_size(32, World(rank=0, size=4)) == 8
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        local_batch_size(30, World(rank=0, size=4))


def test_shards_of_the_test_set_cover_it_once() -> None:
    ranges = [shard_range(11, World(rank=r, size=3)) for r in range(3)]
    assert sorted(i for r in ranges for i in r) == list(range(11))
    with pytest.raises(ValueError, match="cannot be shared"):
        shard_range(2, World(rank=0, size=3))


# --- gradients of the global-batch objective vs one process and vs pml's wrappers ------------


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ModelOutput:
        return ModelOutput(embedding=self.fc(x), extras={"raw": x})


class _PairCriterion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.miner, self.loss = miners.BatchHardMiner(), losses.TripletMarginLoss(margin=0.2)

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = output.embedding
        return {"triplet": self.loss(emb, labels, self.miner(emb, labels))}


class _ProxyCriterion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.loss = losses.ProxyAnchorLoss(4, 5)

    def forward(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"proxy_anchor": self.loss(output.embedding, labels)}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return torch.randn(16, 6, generator=generator), torch.arange(16) % 4


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def _one_process(criterion: nn.Module) -> dict[str, torch.Tensor]:
    x, y = _batch()
    objective = Objective(_Linear(), criterion, World())
    sum(objective(x, y).values()).backward()
    return _grads(objective)


def _rank_worker(rank: int, port: int, kind: str, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        x, y = _batch()
        x, y = x[rank * 8 : (rank + 1) * 8], y[rank * 8 : (rank + 1) * 8]
        criterion = _PairCriterion() if kind in ("pair", "pml") else _ProxyCriterion()
        if kind == "pml":  # pml's own wrappers on a DDP model: the reference for pair losses
            model = DistributedDataParallel(_Linear())
            loss = DistributedLossWrapper(criterion.loss)
            miner = DistributedMinerWrapper(criterion.miner)
            emb = model(x).embedding
            loss(emb, y, miner(emb, y)).backward()
            grads = {f"model.{n}": g for n, g in _grads(model.module).items()}
        else:
            objective = DistributedDataParallel(Objective(_Linear(), criterion, World(rank, 2)))
            sum(objective(x, y).values()).backward()
            grads = _grads(objective.module)
        embeddings = gather_embeddings(x[rank::2][:4] * 0 + rank, 8, World(rank, 2, 0, "gloo"))
        queue.put((rank, {k: v.numpy() for k, v in grads.items()}, embeddings.numpy()))
    finally:
        dist.destroy_process_group()


def _two_ranks(kind: str) -> list[tuple[int, dict[str, np.ndarray], np.ndarray]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_rank_worker, args=(r, port, kind, queue)) for r in (0, 1)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return sorted(results, key=lambda r: r[0])


@pytest.mark.parametrize(
    ("kind", "criterion"), [("pair", _PairCriterion), ("proxy", _ProxyCriterion)]
)
def test_two_ranks_give_the_one_process_gradients(kind: str, criterion) -> None:
    expected = _one_process(criterion())
    assert any("loss.proxies" in n for n in expected) == (kind == "proxy")
    for _, grads, _ in _two_ranks(kind):
        assert grads.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_allclose(grads[name], value.numpy(), rtol=1e-5, atol=1e-7)


def test_pair_loss_gradients_match_pml_distributed_wrappers() -> None:
    ours = _two_ranks("pair")
    pml = _two_ranks("pml")
    for (_, mine, gathered), (_, theirs, _) in zip(ours, pml, strict=True):
        for name in ("model.fc.weight", "model.fc.bias"):
            np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-5, atol=1e-7)
        # evaluation gather: rank r's rows r, r+2, ... land in place
        assert gathered[:, 0].tolist() == [0, 1] * 4


# --- torchrun end to end -----------------------------------------------------------------------


def _run(tmp_path: Path, root: Path, suite: str, method: str, processes: int) -> Path:
    overrides = [
        f"method={method}", "dataset=synthetic_tiny", "protocol=tiny", f"dataset.root={root}",
        f"runs_root={tmp_path}", f"suite_name={suite}", "progress=false",
        # LayerNorm backbone: BatchNorm statistics are per rank on CPU (no SyncBatchNorm kernel)
        "protocol.backbone.name=test_convnext",
    ]  # fmt: skip
    if processes == 1:
        command = [sys.executable, "benchmark/run.py", *overrides]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        command = [torchrun, "--standalone", f"--nproc_per_node={processes}",
                   "benchmark/run.py", *overrides]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / suite / method / "synthetic_tiny" / "seed1"


@pytest.mark.parametrize("method", ["baseline_triplet", "proxy_anchor"])
def test_torchrun_two_ranks_match_one_process(tmp_path: Path, tiny_root: Path, method: str) -> None:
    one = _run(tmp_path, tiny_root, "one", method, 1)
    two = _run(tmp_path, tiny_root, "two", method, 2)
    single, double = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert double["runtime"]["world_size"] == 2 and double["runtime"]["backend"] == "gloo"
    assert double["runtime"]["batch_per_process"] == single["runtime"]["batch_per_process"] // 2
    for key, value in single["metrics"].items():
        assert double["metrics"][key] == pytest.approx(value, abs=1e-6), key
    a, b = (torch.load(d / "checkpoint.pt", weights_only=False) for d in (one, two))
    for part in ("model", "criterion"):
        for name, tensor in a[part].items():
            torch.testing.assert_close(b[part][name], tensor, rtol=1e-4, atol=1e-5)
    for row_a, row_b in zip(a["history"], b["history"], strict=True):
        assert row_b["total"] == pytest.approx(row_a["total"], rel=1e-5)
    # only rank 0 writes: one log, one results file, no stray temporaries
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert (two / "train.log").read_text().count("epoch 2:") == 1
