"""Maps judged against part ground truth (benchmark/localisation.py): the pointing game, the
nuance-mass share, the nuance parts found, the references, the view geometry, bad files, and
the measures in a tiny run's results.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.localisation import (
    GroundTruthError,
    ImageParts,
    Localisation,
    read_parts,
    regions,
    view_parts,
)

SIZE = 32


def parts() -> ImageParts:
    """Three visible parts on a 32-px view; the first two carry the nuances; a fourth hidden."""
    return ImageParts(
        names=("crown", "wing", "tail", "cheek"),
        xy=np.array([[6.0, 6.0], [26.0, 6.0], [16.0, 26.0], [26.0, 26.0]]),
        visible=np.array([True, True, True, False]),
        nuance=np.array([True, True, False, True]),
    )


def peak(x: float, y: float, width: float = 2.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    return torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * width**2))


def test_maps_on_nuance_parts_score_and_maps_elsewhere_do_not() -> None:
    located = Localisation(tolerance=4.0, random_grid=4)
    on_crown, on_wing, on_tail = peak(6, 6), peak(26, 6), peak(16, 26)
    hidden_nuance = peak(26, 26)  # a nuance part, but not visible: not a hit
    maps = torch.stack([on_crown, on_wing, on_tail, hidden_nuance])[None]  # (1, 4, H, W)
    located.add(maps, [parts()])
    summary = located.summary()
    assert summary is not None and summary["images"] == 1
    assert [m["pointing"] for m in summary["per_map"]] == [1.0, 1.0, 0.0, 0.0]
    assert [m["peak_part"] for m in summary["per_map"]] == ["crown", "wing", "tail", "background"]
    mass = [m["nuance_mass"] for m in summary["per_map"]]
    assert mass[0] > 0.85 and mass[1] > 0.85 and mass[2] < 0.01 and mass[3] < 0.05  # 2 sigma: 0.86
    assert summary["nuance_parts_found"] == 2  # crown and wing, by different maps
    assert summary["best_pointing"] == 1.0 and summary["pointing"] == 0.5
    # the references: a uniform map's expected hit rate is the hit region's area share
    area = regions(parts(), (SIZE, SIZE), 4.0)
    assert summary["uniform"]["pointing"] == pytest.approx(area.hit.mean())
    assert summary["uniform"]["nuance_mass"] == pytest.approx(area.nuance.mean())
    assert 0 < summary["uniform"]["pointing"] < 0.2


def test_two_maps_on_one_part_find_one_part_and_a_dead_map_finds_none() -> None:
    located = Localisation(tolerance=4.0, random_grid=4)
    maps = torch.stack([peak(6, 6), peak(7, 6), torch.zeros(SIZE, SIZE)])[None]
    located.add(maps, [parts()])
    summary = located.summary()
    assert summary["nuance_parts_found"] == 1
    assert summary["per_map"][2]["pointing"] == 0.0 and summary["per_map"][2]["nuance_mass"] == 0


def test_images_without_ground_truth_or_visible_nuance_are_skipped() -> None:
    located = Localisation(tolerance=4.0, random_grid=4)
    unseen = ImageParts(("a",), np.array([[5.0, 5.0]]), np.array([True]), np.array([False]))
    located.add(peak(5, 5)[None, None].repeat(2, 1, 1, 1), [None, unseen])
    assert located.summary() is None and located.skipped == 2


def test_the_random_reference_spreads_its_mass_like_the_uniform_one() -> None:
    """Random maps on a 4 x 4 grid (one cell = 8 px, the tolerance) put the uniform share of
    their mass on the nuance region, and their peaks (at grid nodes) sometimes on a part."""
    located = Localisation(tolerance=8.0, random_grid=4)
    located.add(torch.rand(400, 1, SIZE, SIZE), [parts()] * 400)
    summary = located.summary()
    assert summary["random"]["nuance_mass"] == pytest.approx(
        summary["uniform"]["nuance_mass"], abs=0.03
    )
    assert 0.05 < summary["random"]["pointing"] < 0.9
    again = Localisation(tolerance=8.0, random_grid=4)
    again.add(torch.rand(400, 1, SIZE, SIZE), [parts()] * 400)
    assert again.summary()["random"] == summary["random"]  # seeded: the same for every run


def test_part_locations_follow_the_evaluation_view() -> None:
    rows = pd.DataFrame({"part": ["a", "b", "c"], "x": [40.0, 2.0, 79.0], "y": [40.0, 40.0, 8.0],
                         "visible": [1, 1, 0], "nuance": [1, 0, 1]})  # fmt: skip
    view = view_parts(rows, (80, 80), {"resize": 64, "crop": 56, "box": None})
    # 80 -> 64 (x 0.8), centre crop 56 (-4): 40 -> 28; 2 -> -2.4 falls outside the crop
    assert view.xy[0].tolist() == pytest.approx([28.0, 28.0])
    assert view.visible.tolist() == [True, False, False]
    boxed = view_parts(rows, (80, 80), {"resize": 64, "crop": 64, "box": (20.0, 20.0, 40.0, 40.0)})
    assert boxed.xy[0].tolist() == pytest.approx([32.0, 32.0])  # (40 - 20) x 64 / 40


def test_a_bad_parts_file_is_refused_naming_it(tmp_path: Path) -> None:
    assert read_parts(tmp_path) is None  # no ground truth: nothing measured
    (tmp_path / "parts.csv").write_text("path,part,x,y\nimg.png,crown,1,2\n")
    with pytest.raises(GroundTruthError, match=r"parts\.csv: missing column"):
        read_parts(tmp_path)
    (tmp_path / "parts.csv").write_text("path,part,x,y,visible,nuance\nimg.png,crown,one,2,1,0\n")
    with pytest.raises(GroundTruthError, match="non-numeric"):
        read_parts(tmp_path)


@pytest.mark.slow
def test_runs_on_data_with_ground_truth_measure_their_maps(tmp_path: Path) -> None:
    """CNENet's maps and the baseline's CAM are scored on the test images of the tiny
    coarse-to-fine data; a method with neither has no localisation block."""
    from benchmark.config import compose_config
    from benchmark.prepare import prepare
    from benchmark.train import train
    from tests.test_coarse_to_fine import tiny_dataset

    prepare(tiny_dataset(tmp_path), raw_dir=tmp_path, cache_resizes=[40], workers=1)

    def config(method: str):
        return compose_config([
            "dataset=birds_tiny", "protocol=tiny", f"dataset.root={tmp_path / 'birds'}",
            f"runs_root={tmp_path / 'runs'}", "progress=false", f"method={method}",
        ])  # fmt: skip

    blocks = {}
    for method in ("cnenet", "baseline", "triplet"):
        train(config(method))
        results = json.loads((Path(config(method).run_dir) / "results.json").read_text())
        blocks[method] = results["health"].get("localisation")
    assert blocks["triplet"] is None
    for method, maps in (("cnenet", 4), ("baseline", 1)):
        block = blocks[method]
        assert block["images"] + block["skipped_images"] == 24, method
        assert len(block["per_map"]) == maps and block["tolerance_px"] == 8
        assert 0 <= block["pointing"] <= block["best_pointing"] <= 1
        assert 0 <= block["nuance_parts_found"] <= 2
        assert block["uniform"] == blocks["cnenet"]["uniform"]  # same images, same references
    # the report's table: the two scored methods, then the references measured on those images
    from benchmark.report.collect import load_results
    from benchmark.report.grid import Grid
    from benchmark.report.maps import localisation_tables
    from benchmark.report.reference import load_reference

    results = load_results(tmp_path / "runs")
    grid = Grid(results, None, load_reference(None), tmp_path / "report")
    (table,) = localisation_tables(grid)
    names = [row.cells[0] for row in table.rows]
    assert names == ["`baseline` (CAM)", "`cnenet` (nuance maps)", "uniform map (reference)",
                     "random map (reference)"]  # fmt: skip
    assert table.rows[2].cells[2] == f"{blocks['cnenet']['uniform']['pointing']:.2f}"
    best, cam = blocks["cnenet"]["best_pointing"], blocks["baseline"]["best_pointing"]
    verdict = "at least" if best - cam >= 0.2 else "less than"
    lead = f"`cnenet`: its best map points at a nuance part in {best:.2f}"
    assert table.notes[0].startswith(lead)
    assert f"against {cam:.2f} for `baseline`'s CAM" in table.notes[0]
    assert f"{verdict} the +0.2" in table.notes[0]
