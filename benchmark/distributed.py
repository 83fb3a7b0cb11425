"""Multi-process training (torchrun / SLURM): process group, sharded batches, global-batch losses.

``torchrun --nproc_per_node N benchmark/run.py ...`` runs one process per GPU (gloo on CPU).
The protocol's ``batch_size`` is the *global* batch: every rank takes a contiguous 1/N slice of
each global batch, so the union of the ranks' slices is exactly the batch one process would
draw (same sampler, same augmentation: both are functions of (seed, epoch, index)).

Losses see the global batch. :class:`Objective` all-gathers the model's outputs (embedding,
logits, every extra) and the labels before the criterion, so pair losses, miners, proxy
losses, DAM's masks and CNENet's terms are computed over all N x B/N images, on every rank
alike. This is pytorch-metric-learning's ``DistributedLossWrapper(efficient=False)``
generalised to whole criteria; it differs in one respect, on purpose: pml multiplies the loss
by the world size, which also multiplies the gradient of criterion parameters (proxies) by N
once DDP averages them. Here the gather's backward scales only the gradient flowing into the
local slice by N, so after DDP's averaging both the model's and the criterion's gradients
equal the single-process gradient (tests/test_distributed.py checks both against one process
and against pml's wrappers).

What still differs from one process: BatchNorm statistics are per rank unless
``protocol.sync_batchnorm`` converts them (CUDA only: torch's SyncBatchNorm has no CPU
kernel), and model-side randomness (CNENet's warps) is drawn per rank.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from methods.registry import ModelOutput


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _slurm_env_to_torch() -> None:
    """Under a multi-task SLURM job (Hydra's submitit launcher) export torchrun's variables."""
    if "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError as error:
        raise RuntimeError(
            "a SLURM job with several tasks needs submitit (pip install -e '.[slurm]') to set "
            "up torch.distributed, or launch with torchrun"
        ) from error
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # we pick LOCAL_RANK


def init_world(device_name: str) -> World:
    """Join the process group when launched by torchrun (or as SLURM tasks); else one process."""
    _slurm_env_to_torch()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return World(rank=rank, size=size, local_rank=local_rank, backend=backend)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def local_batch_size(batch_size: int, world: World) -> int:
    if batch_size % world.size:
        raise ValueError(
            f"protocol.batch_size={batch_size} is the global batch and must be divisible by the "
            f"number of processes ({world.size})"
        )
    return batch_size // world.size


class ShardedBatchSampler:
    """This rank's contiguous 1/N slice of every batch of a batch sampler (global batches)."""

    def __init__(self, batches, world: World) -> None:
        self.batches = batches
        self.world = world

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            batch = list(batch)
            share = local_batch_size(len(batch), self.world)
            yield batch[self.world.rank * share : (self.world.rank + 1) * share]


class _GatherSlices(torch.autograd.Function):
    """All-gather along dim 0 (rank order); the backward keeps this rank's slice, times N.

    Every rank computes the same loss from the same gathered tensor, so the gradient of the
    local slice is exact on its own rank; the factor N undoes DDP's averaging over ranks.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        size, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(size)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.size, ctx.rank, ctx.rows = size, rank, tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        rows = ctx.rows
        return grad[ctx.rank * rows : (ctx.rank + 1) * rows] * ctx.size


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Rank-ordered concatenation of every rank's tensor; differentiable when it requires grad."""
    if tensor.requires_grad:
        return _GatherSlices.apply(tensor)
    sent = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor.contiguous()
    parts = [torch.empty_like(sent) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sent)
    return torch.cat(parts).to(tensor.dtype)


def gather_output(output: ModelOutput) -> ModelOutput:
    """The global batch's ModelOutput: every tensor gathered along its batch dimension."""
    return ModelOutput(
        embedding=gather_rows(output.embedding),
        logits=None if output.logits is None else gather_rows(output.logits),
        extras={name: gather_rows(value) for name, value in output.extras.items()},
    )


class Objective(nn.Module):
    """``objective(images, labels) -> {term: loss}``: model, then criterion on the global batch.

    One module holding model and criterion, so DistributedDataParallel keeps both (backbone,
    heads and proxies) in sync. With one process it is just ``criterion(model(x, y), y)``.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, world: World) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.world = world

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        output = self.model(images, labels)
        if self.world.distributed:
            output, labels = gather_output(output), gather_rows(labels)
        return self.criterion(output, labels)


def shard_range(total: int, world: World) -> range:
    """This rank's share of ``total`` items: rank, rank + N, rank + 2N, ..."""
    if total < world.size:
        raise ValueError(f"{total} items cannot be shared by {world.size} processes")
    return range(world.rank, total, world.size)


def gather_embeddings(embeddings: torch.Tensor, total: int, world: World) -> torch.Tensor:
    """Every rank's (n_r, D) embeddings of :func:`shard_range` -> the (total, D) whole, in order.

    One all-gather (shards padded to equal length), returned on the CPU on every rank.
    """
    if not world.distributed:
        return embeddings
    share = -(-total // world.size)
    padded = torch.zeros(share, embeddings.shape[1], dtype=embeddings.dtype)
    padded[: len(embeddings)] = embeddings
    if world.backend == "nccl":
        padded = padded.cuda()
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    whole = torch.empty(total, embeddings.shape[1], dtype=embeddings.dtype)
    for rank, part in enumerate(parts):
        rows = range(rank, total, world.size)
        whole[rows.start :: world.size] = part[: len(rows)].cpu()
    return whole
