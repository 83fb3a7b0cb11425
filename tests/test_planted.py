"""The planted-signal data (dataset birds_planted) and what its localisation measure can tell:
classes differ only at the planted parts; oracle maps at the maps' 7 x 7 resolution reach the
planted parts, a map on the neighbouring part and the uniform and random maps do not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch.nn import functional

from benchmark.config import compose_config
from benchmark.data import coarse_to_fine as c2f
from benchmark.localisation import Localisation, view_parts
from benchmark.map_capacity import blobs
from benchmark.prepare import prepare


def planted_dataset(tmp_path: Path):
    cfg = compose_config(
        ["dataset=birds_planted", f"dataset.root={tmp_path / 'planted'}",
         "dataset.generator.num_classes=8", "dataset.generator.images_per_class=20",
         "dataset.val_classes=1", "dataset.expected.train_classes=4",
         "dataset.expected.test_classes=4", "dataset.expected.train_images=80",
         "dataset.expected.test_images=80"],
        config_name="prepare",
    )  # fmt: skip
    return cfg.dataset


def test_planted_classes_differ_only_at_the_planted_parts(tmp_path: Path) -> None:
    manifest = prepare(planted_dataset(tmp_path), raw_dir=tmp_path, cache_resizes=[], workers=1)
    root = manifest.parent / "source" / c2f.ROOT
    written = json.loads((root / "generator.json").read_text())
    assert written["settings"]["planted"] == ["crown", "tail"]
    nuances = pd.read_csv(root / "class_nuances.txt", sep=" ", header=None, names=["c", "p"])
    names = dict(
        line.split() for line in (root / "parts" / "parts.txt").read_text().splitlines()
    )  # fmt: skip
    planted = {names[str(p)] for p in nuances["p"]}
    assert planted == {"crown", "tail"} and len(nuances) == 2 * 8
    settings = c2f.make_settings(num_classes=8, images_per_class=20, image_size=80, seed=0,
                                 genera=1, planted=("crown", "tail"))  # fmt: skip
    specs = c2f.class_specs(settings)
    fixed = {tuple(c for c in spec.colours if c >= 0) for spec in specs}
    assert len(fixed) == 8  # every class its own (crown, tail) colours
    assert all(
        [c >= 0 for c in spec.colours] == [p in ("crown", "tail") for p in c2f.PARTS]
        for spec in specs
    )  # every other part's colour is drawn per image
    one = specs[0]
    images = [c2f.render_image(settings, one, np.random.default_rng(s))[0] for s in range(2)]
    assert np.asarray(images[0]).tobytes() != np.asarray(images[1]).tobytes()


def test_the_measure_reaches_the_planted_parts_and_not_their_neighbour(tmp_path: Path) -> None:
    """Oracle maps from the ground truth, pooled to the 7 x 7 grid the embedded protocol's maps
    have, then upsampled as the maps are: the tail's and the crown's score high, the cheek's (the
    crown's neighbour, no class information) low, as do the uniform and random references."""
    manifest = prepare(planted_dataset(tmp_path), raw_dir=tmp_path, cache_resizes=[], workers=1)
    parts = pd.read_csv(manifest.parent / "parts.csv")
    view = {"resize": 64, "crop": 56, "box": None}  # protocol embedded_birds
    truth = [view_parts(rows, (80, 80), view) for _, rows in parts.groupby("path", sort=False)]
    located = Localisation(tolerance=8.0, random_grid=7)
    for start in range(0, len(truth), 64):
        chunk = truth[start : start + 64]
        maps = blobs(chunk, ["tail", "crown", "cheek"], 56, 7).nan_to_num(0.0)
        located.add(functional.interpolate(maps, size=(56, 56), mode="bilinear"), chunk)
    summary = located.summary()
    tail, crown, cheek = (m["pointing"] for m in summary["per_map"])
    assert tail >= 0.8 and crown >= 0.6, summary["per_map"]
    assert cheek <= 0.35 and summary["uniform"]["pointing"] <= 0.2
    assert summary["random"]["pointing"] <= 0.3
    assert summary["nuance_parts_found"] >= 1.5


def test_docs_figures_of_the_planted_study_hold_in_its_files() -> None:
    """Every number docs/methods.md states about the planted study, recomputed from the
    committed study table and the map-capacity result."""
    repo = Path(__file__).resolve().parent.parent
    text = " ".join((repo / "docs" / "methods.md").read_text().split())
    table = pd.read_csv(repo / "reports" / "cnenet_planted.csv")
    means = table.groupby("variant", sort=False)[["loc_pointing", "loc_best_pointing"]].mean()
    best = means["loc_best_pointing"]
    capacity = json.loads((repo / "reports" / "planted" / "map_capacity.json").read_text())
    supervised = [m["pointing"] for m in capacity["supervised"]["per_map"]]
    oracle = [m["pointing"] for m in capacity["oracle"]["per_map"]]
    claims = [
        f"images with the defaults (mean over {table['seed'].nunique()} seeds)",
        f"Its best map points at a planted part in {best['default']:.2f}",
        f"order kills the maps ({best['literal']:.2f})",
        f"w_SD = w_SA = 3 gives {best['regularisers_x3']:.2f}, l = 2 {best['l2']:.2f}, no NEM "
        f"{best['no_nem']:.2f}, 15 epochs {best['epochs_15']:.2f}, a 3x learning rate "
        f"{best['lr_x3']:.2f}",
        f"mean over the maps {means.loc['regularisers_off', 'loc_pointing']:.2f} against "
        f"{means.loc['default', 'loc_pointing']:.2f} with them",
        f"class activation map {best['baseline_cam']:.2f}, a uniform map "
        f"{table['loc_uniform_pointing'].mean():.2f}",
        f"after {capacity['epochs']} epochs the crown map points at the crown in "
        f"{supervised[0]:.2f} of the images and the tail map at the tail in {supervised[1]:.2f}",
        f"reach {oracle[0]:.2f} and {oracle[1]:.2f}",
    ]
    for claim in claims:
        assert claim in text, claim
    assert max(best.drop("baseline_cam")) < 0.8  # "no variant ... reaches the 0.8"
    peaks = table[(table["variant"] == "default") & (table["seed"] == 1)]["loc_peak_parts"]
    assert peaks.iloc[0].split().count("background") == 3  # "in seed 1 three of ... four maps"
    assert "in seed 1 three of the default's four maps peak most often off the bird" in text


@pytest.mark.slow
def test_the_paper_scale_planted_study_runs_tiny_on_cpu(tmp_path: Path) -> None:
    """configs/study/cnenet_planted_paper.yaml (the GPU script) end to end on CPU: its variants
    and the baseline's CAM at the paper's 256 -> 224 geometry, shrunk to a small backbone, a few
    images and one epoch; the report has the localisation columns for every variant."""
    import yaml

    from benchmark import map_study

    repo = Path(__file__).resolve().parent.parent
    study = yaml.safe_load((repo / "configs/study/cnenet_planted_paper.yaml").read_text())
    assert study["protocol"] == "paper" and "dataset.generator.image_size=256" in study["overrides"]
    shrink = [
        f"dataset.root={tmp_path / 'planted'}", "dataset.generator.num_classes=6",
        "dataset.generator.images_per_class=4", "dataset.val_classes=1",
        "dataset.expected.train_classes=3", "dataset.expected.test_classes=3",
        "dataset.expected.train_images=12", "dataset.expected.test_images=12",
        "protocol.backbone.name=test_resnet", "protocol.epochs=1", "protocol.batch_size=4",
        "protocol.eval_batch_size=8", "protocol.data.workers=0", "protocol.device=cpu",
    ]  # fmt: skip
    study["overrides"] = [o for o in study["overrides"] if not o.startswith(
        ("dataset.root=", "protocol.epochs=", "protocol.data.workers="))] + shrink  # fmt: skip
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "out"
    code = map_study.main(["--study", str(path), "--weights", "", "--runs",
                           str(tmp_path / "runs"), "--out", str(out), "--figures"])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out / f"{study['name']}.csv")
    assert sorted(table["variant"]) == sorted(study["variants"])
    assert table["loc_pointing"].notna().all()  # every variant measured, the CAM included
    assert (table[table["variant"] == "last_stride_1"]["loc_pointing"] >= 0).all()
