"""ClassBalancedBatchSampler: P x K batches, one epoch = one pass as defined, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from benchmark.sampler import ClassBalancedBatchSampler, apportion, class_stream

# 7 classes of uneven sizes (one below K), 61 images; labels interleaved, not sorted
SIZES = [12, 9, 8, 3, 11, 10, 8]
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(len(SIZES)), SIZES)).tolist()
P, K = 3, 4


def make(seed: int = 1, labels: list[int] = LABELS, **kwargs) -> ClassBalancedBatchSampler:
    options = {"epoch_size": len(labels), "seed": seed, **kwargs}
    return ClassBalancedBatchSampler(labels, P, K, **options)


def test_batches_are_p_distinct_classes_of_k_images() -> None:
    sampler = make()
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(LABELS) // (P * K) == 5
    for batch in batches:
        assert len(batch) == P * K
        classes = [LABELS[i] for i in batch]
        groups = [classes[j * K : (j + 1) * K] for j in range(P)]
        assert all(len(set(g)) == 1 for g in groups), "K consecutive indices per class"
        assert len({g[0] for g in groups}) == P, "P distinct classes"
        for group, start in zip(groups, range(0, P * K, K), strict=True):
            if SIZES[group[0]] >= K:  # no repeats inside a batch unless the class is too small
                assert len(set(batch[start : start + K])) == K


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_epoch_covers_each_class_in_proportion_and_cycles_its_images(epoch: int) -> None:
    sampler = make()
    sampler.set_epoch(epoch)
    drawn = Counter(i for batch in sampler for i in batch)
    total = len(sampler) * P * K
    for label, size in enumerate(SIZES):
        members = [i for i, y in enumerate(LABELS) if y == label]
        draws = sum(drawn[i] for i in members)
        assert draws % K == 0
        ideal = total * size / len(LABELS)
        assert abs(draws - ideal) <= K, f"class {label}: {draws} draws for ideal {ideal:.1f}"
        # shuffled cycle: every image is drawn floor or ceil of draws / size times
        counts = [drawn[i] for i in members]
        assert max(counts) - min(counts) <= 1, f"class {label}: uneven counts {counts}"
        assert min(counts) == draws // size


def test_same_seed_and_epoch_give_the_same_batches_whatever_came_before() -> None:
    first, second = make(seed=5), make(seed=5)
    for epoch in range(3):  # walk `first` through epochs 0..2
        first.set_epoch(epoch)
        list(first)
    second.set_epoch(2)
    assert list(first) == list(second)
    first.set_epoch(3)
    assert list(first) != list(second), "another epoch gives other batches"
    assert list(make(seed=6)) != list(make(seed=5)), "another seed gives other batches"


def test_epoch_size_sets_the_number_of_batches() -> None:
    assert len(make(epoch_size=24)) == 2
    assert len(list(make(epoch_size=35))) == 2  # the remainder of a batch is dropped


def test_a_class_larger_than_one_per_batch_allows_is_capped() -> None:
    labels = [0] * 40 + [1] * 4 + [2] * 4 + [3] * 4  # class 0 would need 2 slots per batch
    sampler = ClassBalancedBatchSampler(labels, 2, 2, epoch_size=len(labels), seed=0)
    for batch in sampler:
        assert len({labels[i] for i in batch}) == 2
    zero = sum(labels[i] == 0 for batch in sampler for i in batch)
    assert zero == len(sampler) * 2, "class 0 is in every batch, once"


@pytest.mark.parametrize("size", [5, 6, 7, 9])
def test_class_stream_cycles_without_repeats_inside_a_chunk(size: int) -> None:
    # chunks of 4 straddle cycle boundaries; a naive reshuffle would repeat images inside them
    stream = class_stream(np.arange(size), 4 * 30, 4, np.random.default_rng(0))
    for start in range(0, len(stream), 4):
        assert len(set(stream[start : start + 4].tolist())) == 4, stream[start : start + 4]
    for start in range(0, len(stream) - size + 1, size):  # each cycle is a permutation
        assert sorted(stream[start : start + size].tolist()) == list(range(size))


def test_class_stream_repeats_only_when_a_class_is_smaller_than_k() -> None:
    stream = class_stream(np.arange(3), 8, 4, np.random.default_rng(0))
    assert sorted(Counter(stream.tolist()).values()) == [2, 3, 3]


def test_apportion_matches_largest_remainder() -> None:
    rng = np.random.default_rng(0)
    quotas = apportion(np.array([5.0, 3.0, 2.0]), total=7, cap=10, rng=rng)
    # ideal 3.5, 2.1, 1.4 -> floors 3, 2, 1 and the largest remainder (0.5) gets the last one
    assert quotas.tolist() == [4, 2, 1]


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        ([0, 0, 1, 1], {}, "only 2 classes"),
        (LABELS, {"epoch_size": 5}, "smaller than one batch"),
        ([], {}, "non-empty"),
    ],
)
def test_bad_arguments_fail_clearly(labels, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(labels=labels, **kwargs)
