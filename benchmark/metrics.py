"""Retrieval metrics on (embeddings, labels): Recall@K, MAP@R, R-Precision.

Protocol (docs/protocol.md): cosine similarity on L2-normalised embeddings; every test image is
a query and every *other* test image is the gallery. The query itself is masked out by index, so
exact duplicate images (identical embeddings) stay in each other's gallery.

Choices, fixed here once for every method:

- Recall@K: a query is a hit if any of its K nearest neighbours shares its label. A K larger than
  the gallery (N - 1 items) means the whole gallery.
- MAP@R and R-Precision as defined in Musgrave et al. 2020, "A Metric Learning Reality Check":
  R = number of *other* items with the query's label; R-Precision = r / R with r the relevant items
  among the first R neighbours; MAP@R = (1 / R) * sum_{i <= R} P(i) * rel(i), P(i) = precision at i.
- Queries with R = 0 (singleton classes: nothing to find) are left out of every metric, as
  pytorch-metric-learning's AccuracyCalculator does ("lone query labels"); a class-disjoint split
  has none. If no query has R > 0 the metrics are undefined: ValueError.
- Ties: neighbours are ordered by similarity, then by gallery index (lower first). Deterministic,
  also when ties straddle the K-th place (exact duplicates, collapsed embeddings).
- Exact and memory-bounded: queries are processed in chunks of ``chunk_size`` rows, so only a
  (chunk_size, N) similarity block is ever held, never N x N. float32 matmul (TF32 off on GPU).
  A zero embedding has cosine 0 to everything.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Literal, overload

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray
DEFAULT_CHUNK_SIZE = 1024


def _as_embeddings(embeddings: ArrayLike) -> torch.Tensor:
    """(N, D) float32 CPU tensor, checked: 2-D, N >= 2, D >= 1, finite."""
    tensor = torch.as_tensor(embeddings).detach()
    if tensor.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < 2 or tensor.shape[1] < 1:
        raise ValueError(
            f"embeddings need N >= 2 items (a query needs a gallery) and D >= 1, "
            f"got shape {tuple(tensor.shape)}"
        )
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"embeddings must be numeric, got dtype {tensor.dtype}")
    tensor = tensor.to(device="cpu", dtype=torch.float32)
    finite_rows = torch.cat([torch.isfinite(rows).all(dim=1) for rows in tensor.split(4096)])
    if not bool(finite_rows.all()):
        bad = (~finite_rows).nonzero().flatten()
        raise ValueError(
            f"embeddings contain NaN or inf in {bad.numel()} of {len(tensor)} rows "
            f"(first: row {int(bad[0])})"
        )
    return tensor


def _as_labels(labels: ArrayLike, num_items: int) -> torch.Tensor:
    """(N,) int64 CPU tensor, checked: 1-D, integer, one per embedding."""
    array = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {array.dtype}")
    if len(array) != num_items:
        raise ValueError(f"got {num_items} embeddings but {len(array)} labels")
    return torch.as_tensor(array.astype(np.int64))


def _stable_topk(similarities: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k per row of (C, N), ordered by (similarity desc, index asc), ties included exactly."""
    extra = int(k < similarities.shape[1])  # one more to see whether a tie crosses the k-th place
    values, indices = torch.topk(similarities, k + extra, dim=1, sorted=False)  # (C, k + extra)
    indices, order = indices.sort(dim=1)  # index ascending, then a stable sort by value
    values, order = values.gather(1, order).sort(dim=1, descending=True, stable=True)
    indices = indices.gather(1, order)
    crossing = values[:, k - 1] == values[:, k] if extra else values[:, 0] != values[:, 0]
    values, indices = values[:, :k], indices[:, :k]
    # topk takes arbitrary members of a tie at the k-th place; take the lowest indices instead
    for row in crossing.nonzero().flatten().tolist():
        kth = values[row, k - 1]
        greater = int((values[row] > kth).sum())
        indices[row, greater:] = (similarities[row] == kth).nonzero().flatten()[: k - greater]
    return values, indices


def _neighbor_chunks(
    embeddings: torch.Tensor, k: int, chunk_size: int, device: torch.device
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (first query row, (C, k) similarities, (C, k) int64 indices) per chunk of queries."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    gallery = torch.nn.functional.normalize(embeddings.to(device), dim=1)  # (N, D)
    num_items = len(gallery)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 on GPU too
    try:
        for start in range(0, num_items, chunk_size):
            stop = min(start + chunk_size, num_items)
            similarities = gallery[start:stop] @ gallery.T  # (C, N) cosine
            rows = torch.arange(stop - start, device=device)
            similarities[rows, rows + start] = -torch.inf  # mask the query itself, by index
            values, indices = _stable_topk(similarities, k)
            yield start, values.cpu(), indices.cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def nearest_neighbors(
    embeddings: ArrayLike,
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest other items of every item by cosine similarity, self excluded by index.

    Returns ``(similarities (N, k) float32, indices (N, k) int64)`` on the CPU, each row ordered
    by similarity (descending), ties by index (ascending).

    >>> emb = [[1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 1.0]]  # rows 0, 1, 2 point the same way
    >>> similarities, indices = nearest_neighbors(torch.tensor(emb), k=3)
    >>> indices.tolist()
    [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    >>> similarities[3].tolist()
    [0.0, 0.0, 0.0]
    """
    tensor = _as_embeddings(embeddings)
    k = operator.index(k)
    if not 1 <= k <= len(tensor) - 1:
        raise ValueError(f"k must be in [1, N - 1] = [1, {len(tensor) - 1}], got {k}")
    chunks = list(_neighbor_chunks(tensor, k, chunk_size, torch.device(device or "cpu")))
    return torch.cat([c[1] for c in chunks]), torch.cat([c[2] for c in chunks])


def _per_query_scores(
    matches: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-query scores from (C, K) neighbour-label matches and (C,) R counts."""
    positions = torch.arange(1, matches.shape[1] + 1)  # (K,) ranks 1..K
    within_r = positions[None, :] <= relevant[:, None]  # (C, K) first R neighbours
    relevant_in_r = (matches & within_r).double()  # rel(i) for i <= R
    precision = relevant_in_r.cumsum(dim=1) / positions  # P(i)
    denominator = relevant.double().clamp(min=1)  # R = 0 rows are excluded later
    scores = {f"recall@{k}": matches[:, :k].any(dim=1) for k in ks}
    scores["map@r"] = (precision * relevant_in_r).sum(
        dim=1
    ) / denominator  # MAP@R (Musgrave et al.)
    scores["r_precision"] = relevant_in_r.sum(dim=1) / denominator
    return scores


@overload
def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = ...,
    *,
    chunk_size: int = ...,
    device: str | torch.device | None = ...,
    return_per_query: Literal[False] = ...,
) -> dict[str, float]: ...
@overload
def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = ...,
    *,
    chunk_size: int = ...,
    device: str | torch.device | None = ...,
    return_per_query: Literal[True],
) -> tuple[dict[str, float], dict[str, np.ndarray]]: ...
def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = (1, 2, 4, 8),
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: str | torch.device | None = None,
    return_per_query: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
    """Recall@K for K in ``ks``, MAP@R and R-Precision, in percent, over queries with R > 0.

    Returns ``{"recall@1": .., ..., "map@r": .., "r_precision": ..}``. With
    ``return_per_query=True`` also a dict of (N,) numpy arrays in input order: the same keys
    (``recall@k`` bool hits; ``map@r`` / ``r_precision`` float64 per query, NaN where excluded),
    ``num_relevant`` (R, int64), ``included`` (R > 0) and ``neighbors`` ((N, min(max(ks), N - 1))
    int64 gallery indices, as ``nearest_neighbors`` gives them, from the same single pass). For
    every metric key, ``metrics[key] == 100 * per_query[key][per_query["included"]].mean()``.

    Four points on the unit circle at 0, 30, 100 and 70 degrees; the last is a singleton class.

    >>> angles = np.deg2rad([0.0, 30.0, 100.0, 70.0])
    >>> embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    >>> metrics = retrieval_metrics(embeddings, np.array([0, 0, 0, 1]), ks=(1, 2))
    >>> {name: round(value, 2) for name, value in metrics.items()}
    {'recall@1': 66.67, 'recall@2': 100.0, 'map@r': 41.67, 'r_precision': 50.0}

    By hand (R = 2 for the three class-0 queries; query 3 has R = 0 and is left out): query 0
    ranks 1, 3, 2 -> relevant at ranks 1 and 3: hit@1, R-Precision 1/2, AP@R = (1/1) / 2. Query 1
    ranks 0, 3, 2: the same. Query 2 ranks 3, 1, 0 -> relevant at ranks 2 and 3: miss@1, hit@2,
    R-Precision 1/2, AP@R = (1/2) / 2. Means: 2/3, 1, (1/2 + 1/2 + 1/4) / 3, 1/2.
    """
    tensor = _as_embeddings(embeddings)
    label_tensor = _as_labels(labels, len(tensor))
    ks = _as_ks(ks)
    _, inverse, counts = torch.unique(label_tensor, return_inverse=True, return_counts=True)
    relevant = counts[inverse] - 1  # (N,) R: other items with the query's label
    included = relevant > 0
    if not bool(included.any()):
        raise ValueError("no query has another item of its class (every class is a singleton)")
    num_neighbors = min(max(*ks, int(relevant.max())), len(tensor) - 1)

    parts: list[dict[str, torch.Tensor]] = []
    for start, _, indices in _neighbor_chunks(
        tensor, num_neighbors, chunk_size, torch.device(device or "cpu")
    ):
        query_labels = label_tensor[start : start + len(indices)]
        matches = label_tensor[indices] == query_labels[:, None]  # (C, K)
        parts.append(_per_query_scores(matches, relevant[start : start + len(indices)], ks))
        parts[-1]["neighbors"] = indices[:, : max(ks)]  # (C, min(max(ks), N - 1))
    per_query = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
    neighbors = per_query.pop("neighbors")

    metrics = {
        name: 100.0 * float(scores[included].double().mean()) for name, scores in per_query.items()
    }
    if not return_per_query:
        return metrics
    arrays = {
        name: (
            scores & included if scores.dtype == torch.bool else scores.where(included, torch.nan)
        )
        for name, scores in per_query.items()
    }
    arrays |= {"num_relevant": relevant, "included": included, "neighbors": neighbors}
    return metrics, {name: values.numpy() for name, values in arrays.items()}


def _as_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int | np.integer) for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    ks = tuple(int(k) for k in ks)
    if min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks must not repeat, got {ks}")
    return ks
