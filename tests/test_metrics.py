"""Retrieval metrics: hand-computed goldens, a naive full-matrix reference, and pml."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import benchmark.metrics
from benchmark.metrics import nearest_neighbors, retrieval_metrics

KEYS = ["recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision"]


def naive_metrics(embeddings: np.ndarray, labels: np.ndarray, ks=(1, 2, 4, 8)) -> dict:
    """Independent reference: full N x N float64 cosine matrix, one Python loop per query."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarities = unit.astype(np.float64) @ unit.T.astype(np.float64)
    sums = {f"recall@{k}": 0.0 for k in ks} | {"map@r": 0.0, "r_precision": 0.0}
    queries = 0
    for query in range(len(labels)):
        gallery = [j for j in range(len(labels)) if j != query]
        ranked = sorted(gallery, key=lambda j: (-similarities[query, j], j))
        relevant = [labels[j] == labels[query] for j in ranked]
        r = sum(relevant)
        if r == 0:
            continue  # singleton class: left out, as in pytorch-metric-learning
        queries += 1
        for k in ks:
            sums[f"recall@{k}"] += any(relevant[:k])
        sums["r_precision"] += sum(relevant[:r]) / r
        found, average_precision = 0, 0.0
        for rank, is_relevant in enumerate(relevant[:r], start=1):
            if is_relevant:
                found += 1
                average_precision += found / rank
        sums["map@r"] += average_precision / r
    return {name: 100.0 * total / queries for name, total in sums.items()}


def naive_neighbors(embeddings: np.ndarray, k: int) -> np.ndarray:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarities = unit.astype(np.float64) @ unit.T.astype(np.float64)
    rows = []
    for query in range(len(unit)):
        gallery = [j for j in range(len(unit)) if j != query]
        rows.append(sorted(gallery, key=lambda j: (-similarities[query, j], j))[:k])
    return np.array(rows)


def sign_embeddings(num_items: int, seed: int) -> np.ndarray:
    """+-1 vectors in D=4: unit rows are +-0.5, so every cosine is an exact multiple of 1/4.

    Only 16 distinct rows: many exact duplicates and ties, computed exactly in any order.
    """
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=(num_items, 4)).astype(np.float32)


def clustered(num_items: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, num_items)
    centers = rng.normal(size=(classes, dim))
    embeddings = centers[labels] + 1.5 * rng.normal(size=(num_items, dim))
    return embeddings.astype(np.float32), labels


def test_doctests_run_and_pass() -> None:
    result = doctest.testmod(benchmark.metrics)
    assert result.attempted >= 6
    assert result.failed == 0


def test_golden_four_points_per_query() -> None:
    # unit circle at 0, 30, 100, 70 degrees; labels 0, 0, 0, 1 (query 3 is a singleton)
    angles = np.deg2rad([0.0, 30.0, 100.0, 70.0])
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    metrics, per_query = retrieval_metrics(
        embeddings, [0, 0, 0, 1], ks=(1, 2), return_per_query=True
    )
    assert metrics == pytest.approx(
        {"recall@1": 200 / 3, "recall@2": 100.0, "map@r": 125 / 3, "r_precision": 50.0}
    )
    np.testing.assert_array_equal(per_query["recall@1"], [True, True, False, False])
    np.testing.assert_array_equal(per_query["recall@2"], [True, True, True, False])
    np.testing.assert_allclose(per_query["map@r"], [0.5, 0.5, 0.25, np.nan])
    np.testing.assert_allclose(per_query["r_precision"], [0.5, 0.5, 0.5, np.nan])
    np.testing.assert_array_equal(per_query["num_relevant"], [2, 2, 2, 0])
    np.testing.assert_array_equal(per_query["included"], [True, True, True, False])


def test_golden_duplicates_and_ties_masked_by_index() -> None:
    # rows 0, 1, 2 are the same image (1, 0); row 1 has the other label. Row 3 is orthogonal.
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 1])
    _, indices = nearest_neighbors(embeddings, k=3)
    # the query is removed by index, not "drop rank 0"; ties go to the lower index
    assert indices.tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    metrics, per_query = retrieval_metrics(embeddings, labels, return_per_query=True)
    # q0: 1(B) 2(A) -> miss@1 hit@2; q1: 0(A) 2(A) 3(B) -> hit@3 only; q2: 0(A) -> hit@1;
    # q3: 0(A) 1(B) -> hit@2. R = 1 everywhere, so MAP@R = R-Precision = recall@1.
    assert metrics == {
        "recall@1": 25.0,
        "recall@2": 75.0,
        "recall@4": 100.0,  # K beyond the 3-item gallery means the whole gallery
        "recall@8": 100.0,
        "map@r": 25.0,
        "r_precision": 25.0,
    }
    np.testing.assert_array_equal(per_query["recall@2"], [True, False, True, True])
    np.testing.assert_array_equal(per_query["neighbors"], indices.numpy())  # same single pass


def test_tie_across_the_kth_place_takes_lowest_indices() -> None:
    embeddings = torch.tensor([[0.0, 1.0]] + [[1.0, 0.0]] * 5)
    _, indices = nearest_neighbors(embeddings, k=2)
    assert indices[0].tolist() == [1, 2]
    assert indices[1].tolist() == [2, 3]
    similarities, indices = nearest_neighbors(embeddings, k=5)
    assert indices[1].tolist() == [2, 3, 4, 5, 0]
    assert similarities[1].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("k", [1, 3, 10, 39])
def test_neighbors_match_naive_sort_with_many_ties(k: int) -> None:
    embeddings = sign_embeddings(40, seed=k)
    _, indices = nearest_neighbors(embeddings, k=k, chunk_size=7)
    np.testing.assert_array_equal(indices.numpy(), naive_neighbors(embeddings, k))
    assert indices.dtype == torch.int64


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_naive_reference_random(seed: int) -> None:
    embeddings, labels = clustered(70, 16, classes=6, seed=seed)
    labels[-1] = 99  # a singleton class
    metrics = retrieval_metrics(embeddings, labels)
    assert list(metrics) == KEYS
    assert metrics == pytest.approx(naive_metrics(embeddings, labels), abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_naive_reference_exact_ties(seed: int) -> None:
    embeddings = sign_embeddings(50, seed)
    labels = np.random.default_rng(seed).integers(0, 4, 50)
    metrics = retrieval_metrics(embeddings, labels, ks=(1, 3, 5))
    assert metrics == pytest.approx(naive_metrics(embeddings, labels, ks=(1, 3, 5)), abs=1e-9)


def test_agrees_with_pytorch_metric_learning_with_duplicates() -> None:
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    embeddings, labels = clustered(300, 32, classes=12, seed=7)
    embeddings[200:230] = embeddings[:30]  # exact duplicates (same image, same label)
    labels[200:230] = labels[:30]
    labels[-1] = 1000  # a singleton class: excluded by both
    unit = torch.nn.functional.normalize(torch.from_numpy(embeddings), dim=1)  # faiss is L2
    calculator = accuracy_calculator.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    label_tensor = torch.from_numpy(labels)
    expected = calculator.get_accuracy(
        unit, label_tensor, unit, label_tensor, ref_includes_query=True
    )
    metrics = retrieval_metrics(embeddings, labels)
    assert 0 < metrics["map@r"] < 100  # not a degenerate case
    assert metrics["recall@1"] == pytest.approx(100 * expected["precision_at_1"], abs=1e-6)
    assert metrics["map@r"] == pytest.approx(
        100 * expected["mean_average_precision_at_r"], abs=1e-6
    )
    assert metrics["r_precision"] == pytest.approx(100 * expected["r_precision"], abs=1e-6)


def test_chunk_size_does_not_change_results() -> None:
    embeddings, labels = clustered(53, 8, classes=5, seed=3)
    embeddings[40:45] = embeddings[:5]
    reference_metrics, reference_per_query = retrieval_metrics(
        embeddings, labels, chunk_size=1024, return_per_query=True
    )
    _, reference_indices = nearest_neighbors(embeddings, k=10)
    np.testing.assert_array_equal(reference_per_query["neighbors"], reference_indices[:, :8])
    for chunk_size in (1, 4, 17, 53):
        metrics, per_query = retrieval_metrics(
            embeddings, labels, chunk_size=chunk_size, return_per_query=True
        )
        assert metrics == reference_metrics
        for name, values in reference_per_query.items():
            np.testing.assert_array_equal(per_query[name], values)
        _, indices = nearest_neighbors(embeddings, k=10, chunk_size=chunk_size)
        assert torch.equal(indices, reference_indices)


def test_per_query_means_are_the_metrics() -> None:
    embeddings, labels = clustered(40, 8, classes=4, seed=5)
    labels[0] = 50  # singleton
    metrics, per_query = retrieval_metrics(embeddings, labels, return_per_query=True)
    included = per_query["included"]
    assert not included[0] and included[1:].all()
    for name in KEYS:
        assert per_query[name].shape == (40,)
        assert metrics[name] == pytest.approx(100 * per_query[name][included].mean(), abs=1e-12)


def test_accepts_torch_and_numpy_and_is_scale_invariant() -> None:
    embeddings, labels = clustered(30, 6, classes=3, seed=9)
    from_numpy = retrieval_metrics(embeddings, labels)
    from_torch = retrieval_metrics(torch.from_numpy(embeddings), torch.from_numpy(labels))
    assert from_numpy == from_torch
    scales = np.random.default_rng(0).uniform(0.5, 4.0, size=(30, 1))
    rescaled = retrieval_metrics(embeddings * scales, labels.astype(np.int32))  # float64 input
    assert rescaled == pytest.approx(from_numpy, abs=1e-9)


@pytest.mark.parametrize(
    ("embeddings", "labels", "message"),
    [
        (np.zeros((4, 3)), np.zeros(5, dtype=int), "4 embeddings but 5 labels"),
        (np.ones((1, 3)), np.zeros(1, dtype=int), "N >= 2"),
        (np.ones(4), np.zeros(4, dtype=int), "must be 2-D"),
        (np.ones((4, 2)), np.zeros((4, 1), dtype=int), "must be 1-D"),
        (np.ones((4, 2)), np.zeros(4), "must be integers"),
        (np.array([[1.0, np.nan], [1, 0], [0, 1]]), [0, 0, 1], "NaN or inf in 1 of 3 rows"),
        (np.array([[1.0, 0], [1, 0], [np.inf, 1]]), [0, 0, 1], "first: row 2"),
        (np.eye(3), [0, 1, 2], "every class is a singleton"),
    ],
)
def test_bad_input_is_a_clear_error(embeddings, labels, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(embeddings, labels)


def test_bad_arguments_are_clear_errors() -> None:
    embeddings, labels = np.eye(4), [0, 0, 1, 1]
    with pytest.raises(ValueError, match="positive integers"):
        retrieval_metrics(embeddings, labels, ks=(1, 0))
    with pytest.raises(ValueError, match="positive integers"):
        retrieval_metrics(embeddings, labels, ks=(1, 2.0))
    assert list(retrieval_metrics(embeddings, labels, ks=np.array([3, 1]))) == [
        "recall@3",
        "recall@1",
        "map@r",
        "r_precision",
    ]
    with pytest.raises(ValueError, match="must not repeat"):
        retrieval_metrics(embeddings, labels, ks=(1, 1))
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(embeddings, labels, chunk_size=0)
    with pytest.raises(ValueError, match=r"k must be in \[1, N - 1\] = \[1, 3\]"):
        nearest_neighbors(embeddings, k=4)
    with pytest.raises(ValueError, match="NaN"):
        nearest_neighbors(np.full((3, 2), np.nan), k=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu() -> None:
    embeddings, labels = clustered(500, 64, classes=10, seed=11)
    embeddings[400:420] = embeddings[:20]
    cpu = retrieval_metrics(embeddings, labels, return_per_query=True)
    gpu = retrieval_metrics(embeddings, labels, device="cuda", return_per_query=True)
    assert cpu[0] == gpu[0]
    for name, values in cpu[1].items():
        np.testing.assert_array_equal(gpu[1][name], values)
