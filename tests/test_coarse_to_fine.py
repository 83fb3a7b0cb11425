"""The coarse-to-fine generated data: class structure, ground truth, shortcut gates, sealing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from benchmark.config import compose_config
from benchmark.data import coarse_to_fine as c2f
from benchmark.data.manifest import SEALED, SealedSplitError, read_manifest, select_splits
from benchmark.prepare import prepare


def settings(**knobs):
    base = dict(num_classes=100, images_per_class=4, image_size=80, seed=0)
    return c2f.make_settings(**(base | knobs))


def test_species_of_a_genus_share_colours_and_differ_at_their_nuance_parts() -> None:
    specs = c2f.class_specs(settings())
    assert len({s.colours for s in specs}) == 100  # every class distinct
    for genus in {s.group for s in specs}:
        members = [s for s in specs if s.group == genus]
        assert len({tuple(sorted(s.colours)) for s in members}) == 1  # same colours
    for a, b in zip(specs, specs[10:], strict=False):  # same genus (c % 10), other species
        assert a.group == b.group
        differ = {p for p in range(6) if a.colours[p] != b.colours[p]}
        assert differ <= set(a.nuances) | set(b.nuances) and 2 <= len(differ) <= 4
    # genera: other genera differ at more parts than species of one genus, on average
    same = [sum(x != y for x, y in zip(a.colours, b.colours, strict=True))
            for a in specs for b in specs if a.group == b.group and a is not b]  # fmt: skip
    other = [sum(x != y for x, y in zip(a.colours, b.colours, strict=True))
             for a in specs for b in specs if a.group != b.group]  # fmt: skip
    assert np.mean(same) + 1 < np.mean(other)


def test_position_blind_description_identifies_no_class_but_a_vocabulary_gap_does() -> None:
    specs = c2f.class_specs(settings())
    assert c2f.position_blind_unique(specs, range(50, 100)) == 0.0
    one_per_genus = c2f.class_specs(settings(genera=100, colours=5, min_genus_distance=2))
    assert c2f.position_blind_unique(one_per_genus, range(50, 100)) > 0.5


def test_classes_that_cannot_be_placed_name_the_knob() -> None:
    with pytest.raises(ValueError, match="min_genus_distance"):
        c2f.class_specs(settings(genera=40, min_genus_distance=6, colours=2))
    with pytest.raises(ValueError, match=r"generator\.genera or generator\.colours"):
        c2f.class_specs(settings(num_classes=40, genera=1, colours=2))
    with pytest.raises(TypeError, match="unknown coarse_to_fine generator knob"):
        c2f.make_settings(num_classes=4, images_per_class=1, image_size=32, seed=0, marks=2)
    with pytest.raises(ValueError, match="at most 54 coarse categories"):
        settings(mode="source", num_classes=60)


def test_images_are_deterministic_and_patches_sit_where_the_ground_truth_says() -> None:
    clean = settings(noise=0.0, illumination=0.0, occlusion=0.0, clutter=0)
    spec = c2f.class_specs(clean)[7]
    first = c2f.render_image(clean, spec, np.random.default_rng([0, 7, 3]))
    again = c2f.render_image(clean, spec, np.random.default_rng([0, 7, 3]))
    assert np.array_equal(np.asarray(first[0]), np.asarray(again[0])) and first[1:] == again[1:]
    pixels = np.asarray(first[0]).astype(float)
    for k, (x, y, visible) in enumerate(first[2]):
        assert visible == 1
        colour = np.array(c2f.PALETTE[spec.colours[k]], dtype=float)
        seen = pixels[int(y), int(x)]
        # the patch colour up to its per-image tone (0.85-1.1), unless a later patch covers it
        tone = seen / np.maximum(colour, 1)
        assert _covered(first[2], k) or np.ptp(tone[colour > 100]) < 0.12, (c2f.PARTS[k], seen)


def test_source_patches_carry_no_class_information() -> None:
    """Without accents, every coarse category drawn from the same generator wears the same
    patch colours: the colour at each visible patch centre is the per-image draw's."""
    source = settings(
        mode="source", num_classes=54, noise=0.0, illumination=0.0, occlusion=0.0, clutter=0
    )
    specs = c2f.class_specs(source)
    assert specs[0].plan == 0 and len({s.plan for s in specs}) == 54
    assert all(s.colours is None and s.nuances == () for s in specs)
    for i in range(3):
        draws = c2f._nuisances(np.random.default_rng([1, 0, i]), source)
        for spec in (specs[0], specs[5], specs[40]):
            image, _, located = c2f.render_image(source, spec, np.random.default_rng([1, 0, i]))
            pixels = np.asarray(image).astype(float)
            for k, (x, y, visible) in enumerate(located):
                if not visible or not draws["present"][k] or _covered(located, k):
                    continue
                colour = np.array(c2f.PALETTE[draws["random_colours"][k]], dtype=float)
                tone = pixels[int(y), int(x)] / np.maximum(colour, 1)
                assert np.ptp(tone[colour > 100]) < 0.12, (spec.group, c2f.PARTS[k])


def _covered(located: list, k: int) -> bool:
    """Whether a patch drawn after patch ``k`` lies over its centre."""
    x, y, _ = located[k]
    return any(np.hypot(x - x2, y - y2) < 3 for x2, y2, _ in located[k + 1 :])


def tiny_dataset(tmp_path: Path, *overrides: str):
    cfg = compose_config(
        ["dataset=birds_tiny", f"dataset.root={tmp_path / 'birds'}", *overrides],
        config_name="prepare",
    )
    return cfg.dataset


def test_prepare_writes_ground_truth_genera_and_shortcut_figures(tmp_path: Path) -> None:
    manifest = prepare(tiny_dataset(tmp_path), raw_dir=tmp_path, cache_resizes=[], workers=1)
    frame = read_manifest(manifest)
    parts = pd.read_csv(manifest.parent / "parts.csv")
    assert len(parts) == 6 * len(frame) and set(parts["path"]) == set(frame["path"])
    assert set(parts["part"]) == set(c2f.PARTS)
    nuance_parts = parts.groupby("path")["nuance"].sum()
    assert (nuance_parts == 2).all()  # two nuance parts per image (nuance_parts: 2)
    levels = c2f.genus_levels(manifest.parent, frame)
    assert set(levels["genus"]) == {"Genus_01", "Genus_02"}
    figures = json.loads((manifest.parent / "shortcuts.json").read_text())
    assert figures["test"]["position_blind_unique"] == 0.0 and figures["test"]["classes"] == 4


def test_a_broken_gate_fails_prepare_naming_the_knob_and_leaves_nothing(tmp_path: Path) -> None:
    dataset = tiny_dataset(
        tmp_path, "dataset.generator.genera=8", "++dataset.generator.colours=5",
        "++dataset.generator.min_genus_distance=2", "dataset.gates.position_blind_unique_max=0.1",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"generator\.colours"):
        prepare(dataset, raw_dir=tmp_path, cache_resizes=[], workers=1)
    assert not (tmp_path / "birds").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".birds")]  # no staging left
    dataset = tiny_dataset(tmp_path, "dataset.gates.colour_histogram_max_vs_chance=0.0")
    with pytest.raises(ValueError, match=r"generator\.patch_size"):
        prepare(dataset, raw_dir=tmp_path, cache_resizes=[], workers=1)
    assert not (tmp_path / "birds").exists()


def test_sealed_split_cannot_be_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame({"split": ["train", "val", "test"]})
    monkeypatch.setenv(SEALED, "test")
    assert list(select_splits(frame, ["train", "val"])) == [0, 1]
    with pytest.raises(SealedSplitError, match="test split is sealed"):
        select_splits(frame, ["test"])


def test_tuning_cells_are_sealed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A tuning cell that would evaluate on the test split fails before reading it."""
    from benchmark import tune

    monkeypatch.delenv(SEALED, raising=False)
    cfg = OmegaConf.create({"run_dir": str(tmp_path)})
    seen = {}
    monkeypatch.setattr(
        tune, "train", lambda cfg: seen.setdefault("sealed", tune.os.environ[SEALED])
    )
    tune.run_cell(cfg)
    assert "test" in seen["sealed"].split(",")


def test_source_accent_colours_are_position_blind_class_information() -> None:
    """With accents, a coarse category's accent colour sits on accent_parts parts drawn per
    image, and on no other part: colour without place names the category, place never does."""
    source = settings(
        mode="source", num_classes=54, accent_colours=6, accent_parts=3, noise=0.0,
        illumination=0.0, occlusion=0.0, clutter=0, patch_presence=1.0,
    )  # fmt: skip
    specs = c2f.class_specs(source)
    assert {s.accent for s in specs} == set(range(6)) and len({s.plan for s in specs}) == 9
    spec, places, checked = specs[2], set(), 0
    for i in range(12):
        rng = np.random.default_rng([1, 2, i])
        draws = c2f._nuisances(np.random.default_rng([1, 2, i]), source)
        image, _, located = c2f.render_image(source, spec, rng)
        pixels = np.asarray(image).astype(float)
        accent = np.array(c2f.PALETTE[spec.accent], dtype=float)
        places.add(tuple(sorted(int(k) for k in draws["accent_parts"])))
        for k, (x, y, visible) in enumerate(located):
            if not visible or _covered(located, k):
                continue
            tone = pixels[int(y), int(x)] / np.maximum(accent, 1)
            wears_accent = np.ptp(tone[accent > 100]) < 0.12 and 0.8 < tone.max() < 1.15
            assert wears_accent == (k in draws["accent_parts"]), (i, c2f.PARTS[k])
            checked += 1
    assert checked > 40 and len(places) > 5  # the accent moves between parts
    with pytest.raises(ValueError, match="not both"):
        settings(mode="source", num_classes=54, accent_colours=2, colour_families=2)


@pytest.mark.slow
def test_calibration_trial_runs_sealed_and_tabulates_validation_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark import calibrate

    steps = {}

    def run_logged(command, log, env):
        steps[log.stem] = env.get(SEALED)
        return real(command, log, env)

    real = calibrate.run_logged
    monkeypatch.setattr(calibrate, "run_logged", run_logged)

    args = [
        "--trial", "tiny", "--dataset", "birds_tiny", "--source-dataset", "birds_tiny",
        "--source", "mode=source", "--pretrain-epochs", "1", "--epochs", "1", "--protocol", "tiny",
        "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--note", "a test",
    ]  # fmt: skip
    assert calibrate.main(args) == 0
    row = pd.read_csv(tmp_path / "out" / "calibration.csv").iloc[0]
    assert row["trial"] == "tiny" and row["note"] == "a test"
    assert 0 <= row["untrained_r1"] <= 100 and 0 <= row["baseline_r1"] <= 100
    assert steps == {  # data building unsealed (the source's own splits), every run sealed
        "prepare_source": None, "prepare_benchmark": None, "pretrain": None,
        "untrained_seed1": "test", "baseline_seed1": "test",
    }  # fmt: skip
    runs = list((tmp_path / "work" / "tiny" / "runs").glob("*/birds_tiny/seed1"))
    assert len(runs) == 2 and not any((r / "test_evaluations.csv").exists() for r in runs)
    assert (tmp_path / "out" / "shortcuts_tiny.json").is_file()
    # the same trial name with another setting is refused: its outputs are another setting's
    with pytest.raises(SystemExit, match="other epochs"):
        calibrate.main([*args[:-2], "--epochs", "2"])
    markdown = (tmp_path / "out" / "calibration.md").read_text()
    assert "| tiny |" in markdown and "a test" in markdown


def test_the_report_reads_genus_levels_of_the_test_images(tmp_path: Path) -> None:
    """The error analysis's coarse level for the generated birds: genus, per test image."""
    from benchmark.report.hierarchy import HierarchyError, coarse_levels

    manifest = prepare(tiny_dataset(tmp_path), raw_dir=tmp_path, cache_resizes=[], workers=1)
    frame = read_manifest(manifest)
    test = frame[frame["split"] == "test"]
    levels = coarse_levels("coarse_to_fine", manifest)
    tiny = c2f.make_settings(num_classes=8, images_per_class=6, image_size=48, seed=0, genera=2)
    specs = {f"{i + 1:03d}.{s.name}": s.group for i, s in enumerate(c2f.class_specs(tiny))}
    assert list(levels["genus"]) == [specs[name] for name in test["class_name"]]
    (manifest.parent / "source" / "CUB_200_2011" / "genera.txt").write_text("1 Genus_01\n")
    with pytest.raises(HierarchyError, match="no genus for class id"):
        coarse_levels("coarse_to_fine", manifest)
    (manifest.parent / "source" / "CUB_200_2011" / "genera.txt").unlink()
    with pytest.raises(HierarchyError, match=r"genera\.txt"):
        coarse_levels("coarse_to_fine", manifest)


def test_docs_claims_about_the_chosen_calibration_trial_hold_in_its_table() -> None:
    """docs/embedded.md's sentences on trial accent6_parts5_pre20 and unused_seeds, checked
    against reports/calibration/calibration.csv (validation classes)."""
    repo = Path(__file__).resolve().parent.parent
    table = pd.read_csv(repo / "reports" / "calibration" / "calibration.csv")
    chosen = table[table["trial"] == "accent6_parts5_pre20"]
    assert sorted(chosen["seed"]) == [1, 2, 3]
    assert (chosen["ratio"] <= 0.6).all() and (chosen["gain_r1"] >= 15).all()
    assert chosen["baseline_r1"].between(40, 75).all() and (chosen["gain_map_r"] < 10).all()
    unused = table[table["trial"] == "unused_seeds"].iloc[0]
    assert abs(unused["ratio"] - chosen["ratio"].mean()) <= 0.1
    assert abs(unused["baseline_r1"] - chosen["baseline_r1"].mean()) > 5  # as the docs say
    text = " ".join((repo / "docs" / "embedded.md").read_text().split()).lower()
    assert "trial `accent6_parts5_pre20`" in text and "trial `unused_seeds`" in text
    source = yaml.safe_load((repo / "configs" / "dataset" / "birds_source.yaml").read_text())
    assert source["generator"]["accent_parts"] == 5 and source["generator"]["accent_colours"] == 6
    birds = yaml.safe_load((repo / "configs" / "dataset" / "birds.yaml").read_text())
    genera, expected = birds["generator"]["genera"], birds["expected"]
    train = expected["train_classes"]
    for split in (range(train - birds["val_classes"], train), range(train, train * 2)):
        genus = [c % genera for c in split]  # every class has a sibling of its genus in its split
        assert min(genus.count(g) for g in genus) >= 2, (genera, split)


def test_docs_figures_of_the_tuning_on_birds_hold_in_its_table() -> None:
    """docs/embedded.md's figures on the tuned default, from the committed tuning table."""
    repo = Path(__file__).resolve().parent.parent
    table = pd.read_csv(repo / "reports" / "tuning" / "tune-methods-embedded_birds-birds.csv")
    baseline = table[
        (table["method"] == "baseline") & (table["knobs"] == '{"label_smoothing": 0.0}')
    ]
    at = {
        float(k): float(v) for k, v in zip(baseline["lr_scale"], baseline["recall@1"], strict=True)
    }
    report = (repo / "reports" / "tuning" / "tune-methods-embedded_birds-birds.md").read_text()
    untrained = float(report.split("recall@1 ")[1].split(":")[0])
    text = " ".join((repo / "docs" / "embedded.md").read_text().split())
    claim = (f"the baseline {at[3.0]:.1f} R@1 at lr_scale 3 against {at[0.1]:.1f} at 0.1, the "
             f"untrained backbone {untrained:.1f}")  # fmt: skip
    assert claim in text, claim
    tuned = yaml.safe_load(
        (repo / "configs" / "tuned" / "embedded_birds_baseline.yaml").read_text()
    )
    assert tuned["tuned"]["lr_scale"] == 3.0 and at[3.0] > 75  # "above the 40-75 R@1 range"
