"""Run health: embedding spread, CARE-map health, chance and the degenerate flag, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.health import (
    DISTINCT_SIMILARITY,
    MapHealth,
    chance_recall_at_1,
    class_separation,
    degenerate_reasons,
    distinct_groups,
    embedding_spread,
)
from methods.cnenet.probes import care_map_probes

CARE_MAP_PROBES = care_map_probes()  # without a model: overlap and equivariance only


def test_spread_of_orthogonal_and_of_collapsed_embeddings() -> None:
    orthogonal = embedding_spread(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    assert orthogonal["mean_cosine_distance"] == pytest.approx(1.0)
    assert orthogonal["effective_rank"] == pytest.approx(2.0)  # equal singular values
    collapsed = embedding_spread(torch.ones(5, 4) + 1e-9 * torch.randn(5, 4))
    assert collapsed["mean_cosine_distance"] == pytest.approx(0.0, abs=1e-9)
    assert collapsed["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    diverged = embedding_spread(torch.tensor([[math.nan, 0.0], [1.0, 0.0]]))
    assert math.isnan(diverged["mean_cosine_distance"])


def test_map_health_counts_dead_maps_and_overlap() -> None:
    maps = torch.zeros(2, 2, 4, 4)
    maps[0, 0, :2] = 1.0  # image 0: map 1 on the top half, map 2 on the bottom half
    maps[0, 1, 2:] = 1.0
    maps[1, 0, :2] = 1.0  # image 1: map 2 is all zero
    health = MapHealth(probes=CARE_MAP_PROBES)
    health.add(maps)
    summary = health.summary()
    assert summary["dead_map_fraction"] == pytest.approx(1 / 4)
    assert summary["mean_activation"] == pytest.approx((0.5 + 0.25) / 2)
    assert summary["map_overlap"] == pytest.approx(0.0)  # disjoint or zero: cosine 0
    assert summary["equivariance_error"] is None
    plain = MapHealth()  # a method that declares no probes: only the generic measures
    plain.add(maps)
    plain.add_equivariance(maps[:, :1].expand(-1, 3, -1, -1), lambda x: x[:, :1])
    assert plain.summary()["map_overlap"] is None and plain.summary()["equivariance_error"] is None
    assert plain.summary()["dead_map_fraction"] == pytest.approx(1 / 4)


def test_equivariance_error_is_small_for_maps_that_move_with_the_image() -> None:
    images = torch.zeros(4, 3, 32, 32)
    images[:, :, 8:14, 18:26] = 1.0  # a mark off centre
    moving = MapHealth(probes=CARE_MAP_PROBES)
    moving.add_equivariance(images, lambda x: x[:, :1])  # the map is the image itself
    fixed_map = torch.zeros(1, 1, 32, 32)
    fixed_map[..., 8:14, 18:26] = 1.0
    still = MapHealth(probes=CARE_MAP_PROBES)
    still.add_equivariance(images, lambda x: fixed_map.expand(len(x), -1, -1, -1))
    for health in (moving, still):
        health.add(images[:, :1])  # summary() needs maps seen
    moving_error = moving.summary()["equivariance_error"]
    still_error = still.summary()["equivariance_error"]
    assert moving_error is not None and still_error is not None
    assert moving_error < 0.5 * still_error


def test_chance_and_the_degenerate_rule() -> None:
    labels = np.array([0, 0, 1, 1])
    assert chance_recall_at_1(labels) == pytest.approx(100 / 3)
    spread = {"mean_cosine_distance": 0.4, "effective_rank": 5.0}
    assert degenerate_reasons(60.0, 2.0, spread) == []
    assert "within 1.5x chance" in degenerate_reasons(3.0, 2.0, spread)[0]
    collapsed = {"mean_cosine_distance": 0.001, "effective_rank": 1.0}
    assert "collapsed" in degenerate_reasons(60.0, 2.0, collapsed)[0]


def test_class_separation_tells_a_narrow_cone_from_a_collapse() -> None:
    labels = np.repeat(np.arange(4), 5)
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator)
    # a narrow cone around one direction whose classes still sit apart: not collapsed
    cone = torch.full((20, 8), 10.0) + centres.repeat_interleave(5, 0) * 0.05
    cone_health = embedding_spread(cone) | class_separation(cone, labels)
    assert cone_health["mean_cosine_distance"] < 0.01
    assert cone_health["separation"] > 5.0
    assert degenerate_reasons(40.0, 20.0 / 19, cone_health) == []
    # every class mixed at random: same- and different-class distances agree
    mixed = torch.randn(20, 8, generator=generator)
    mixed_health = embedding_spread(mixed) | class_separation(mixed, labels)
    assert mixed_health["separation"] == pytest.approx(
        mixed_health["different_class_distance"] / mixed_health["same_class_distance"]
    )
    exact = class_separation(torch.eye(2).repeat_interleave(2, 0), np.array([0, 0, 1, 1]))
    assert exact["same_class_distance"] == pytest.approx(0.0)
    assert exact["separation"] == math.inf
    one_point = torch.ones(20, 8)
    reasons = degenerate_reasons(40.0, 1.0, embedding_spread(one_point) | {"separation": 1.0})
    assert reasons and "classes not separated" in reasons[0]


def test_duplicate_maps_count_as_one_and_the_largest_overlap_shows_them() -> None:
    maps = torch.zeros(3, 3, 4, 4)
    maps[:, 0, :2] = 1.0  # maps 1 and 2 identical (top half), map 3 the bottom half
    maps[:, 1, :2] = 1.0
    maps[:, 2, 2:] = 1.0
    health = MapHealth(probes=CARE_MAP_PROBES)
    health.add(maps)
    summary = health.summary()
    assert summary["largest_overlap"] == pytest.approx(1.0)
    assert summary["distinct_maps"] == 2  # what the mean overlap (1/3) hides
    assert summary["map_overlap"] == pytest.approx(1 / 3)
    assert summary["map_similarity"][0] == pytest.approx([1.0, 1.0, 0.0])
    assert distinct_groups(np.eye(4), DISTINCT_SIMILARITY) == 4
    assert distinct_groups(np.full((3, 3), 0.95), DISTINCT_SIMILARITY) == 1


def test_flat_responses_are_inactive_although_min_max_makes_them_span_0_to_1() -> None:
    images = torch.rand(2, 3, 8, 8)
    responses = torch.rand(2, 2, 4, 4)  # map 1 varies
    responses[:, 1] = 0.3 + 1e-5 * torch.rand(2, 4, 4)  # map 2 is flat before normalisation
    health = MapHealth(probes=care_map_probes(lambda x: responses))
    spread = (responses - responses.amin(dim=(2, 3), keepdim=True)) / (
        responses.amax(dim=(2, 3), keepdim=True) - responses.amin(dim=(2, 3), keepdim=True)
    )
    health.add(spread)  # after min-max both maps span 0..1: none is "dead"
    health.add_activity(images)
    summary = health.summary()
    assert summary["dead_map_fraction"] == 0.0
    assert summary["inactive_fraction"] == pytest.approx(0.5)
    without = MapHealth(probes=CARE_MAP_PROBES)  # probes without responses: not measured
    without.add(spread)
    without.add_activity(images)
    assert without.summary()["inactive_fraction"] is None
