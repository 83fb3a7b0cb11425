"""Per-method tuning: the equal budget, the choice rule, the written configs, lr_scale applied."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from benchmark.config import compose_config, run_settings
from benchmark.optimizer import make_optimizer
from benchmark.tune import TuningError
from benchmark.tune_methods import (
    Trial,
    choose,
    chosen_header,
    grid_config,
    map_constraints,
    trials,
    tuned_yaml,
    unconstrained,
)
from methods.registry import build_method
from tests.test_method_contract import FEATURE_DIM, TinyBackbone

REPO = Path(__file__).resolve().parent.parent


def test_every_default_method_has_the_same_budget() -> None:
    grid = trials(grid_config())
    budgets = pd.Series([t.method for t in grid]).value_counts()
    assert budgets.nunique() == 1 and budgets.iloc[0] == 6
    suite = yaml.safe_load((REPO / "configs/suite/default.yaml").read_text())
    tuned = set(budgets.index)
    assert tuned == set(suite["methods"]) - {"untrained"}
    first = next(t for t in grid if t.method == "triplet")
    assert "method.loss_options.margin=0.2" in first.overrides()
    assert "tuned.lr_scale=0.03" in first.overrides()


def test_unequal_budgets_and_unknown_methods_are_refused() -> None:
    tune = grid_config()
    tune.knobs.triplet = [{"loss_options.margin": 0.2}]
    with pytest.raises(TuningError, match="unequal trials per method"):
        trials(tune)
    with pytest.raises(TuningError, match="no grid for method"):
        trials(grid_config(), ["nonexistent"])


def test_choice_is_the_best_complete_trial_per_method() -> None:
    frame = pd.DataFrame([
        {"method": "a", "trial": 0, "seed": 1, "status": "done", "map@r": 10.0},
        {"method": "a", "trial": 1, "seed": 1, "status": "done", "map@r": 30.0},
        {"method": "a", "trial": 2, "seed": 1, "status": "diverged", "map@r": float("nan")},
        {"method": "b", "trial": 0, "seed": 1, "status": "done", "map@r": 5.0},
        {"method": "b", "trial": 1, "seed": 1, "status": "done", "map@r": 5.0},  # tie: first
        {"method": "c", "trial": 0, "seed": 1, "status": "diverged", "map@r": float("nan")},
    ])  # fmt: skip
    assert choose(frame, "map@r") == {"a": 1, "b": 0}


def test_map_constraints_choose_among_trials_whose_maps_live_and_differ() -> None:
    """CARE-map trials whose validation maps are dead or overlap are passed over; a method
    without maps (NaN columns) is unaffected; with no eligible trial the best one is taken and
    the method is named."""
    limits = {"dead_map_fraction": 0.1, "map_overlap": 0.5}
    nan = float("nan")
    frame = pd.DataFrame([
        {"method": "maps", "trial": 0, "seed": 1, "status": "done", "map@r": 30.0,
         "dead_map_fraction": 0.0, "map_overlap": 0.51},  # best, but its maps overlap
        {"method": "maps", "trial": 1, "seed": 1, "status": "done", "map@r": 20.0,
         "dead_map_fraction": 0.5, "map_overlap": 0.2},  # half its maps dead
        {"method": "maps", "trial": 2, "seed": 1, "status": "done", "map@r": 10.0,
         "dead_map_fraction": 0.05, "map_overlap": 0.49},
        {"method": "plain", "trial": 0, "seed": 1, "status": "done", "map@r": 5.0,
         "dead_map_fraction": nan, "map_overlap": nan},
        {"method": "plain", "trial": 1, "seed": 1, "status": "done", "map@r": 6.0,
         "dead_map_fraction": nan, "map_overlap": nan},
        {"method": "stuck", "trial": 0, "seed": 1, "status": "done", "map@r": 1.0,
         "dead_map_fraction": 1.0, "map_overlap": 0.0},
        {"method": "stuck", "trial": 1, "seed": 1, "status": "done", "map@r": 2.0,
         "dead_map_fraction": 0.0, "map_overlap": 0.9},
    ])  # fmt: skip
    assert choose(frame, "map@r") == {"maps": 0, "plain": 1, "stuck": 1}
    assert choose(frame, "map@r", limits) == {"maps": 2, "plain": 1, "stuck": 1}
    assert unconstrained(frame, "map@r", limits) == ["stuck"]
    tune = grid_config()
    assert map_constraints(tune) == {"dead_map_fraction": 0.1, "map_overlap": 0.45}
    tune.map_constraints = {"overlap": 0.5}
    with pytest.raises(TuningError, match="map_constraints has unknown key"):
        map_constraints(tune)


def test_written_config_composes_into_the_run_and_scales_every_rate(tmp_path: Path) -> None:
    trial = Trial("triplet", 4, 0.3, {"loss_options.margin": 0.1}, {})
    text = tuned_yaml(
        trial, "reports/tuning/x.md", chosen_header("reports/tuning/x.md", "map@r", 42.0)
    )
    assert "# the best validation map@r (42.0) of the method's equal-budget grid." in text
    parsed = yaml.safe_load(text)
    assert parsed["tuned"]["lr_scale"] == 0.3
    assert parsed["method"] == {"loss_options": {"margin": 0.1}}
    assert parsed["tuned"]["knobs"] == {"loss_options.margin": "${method.loss_options.margin}"}
    # the same values given as overrides reach the typed settings and the optimiser
    cfg = compose_config(["method=triplet", "tuned.lr_scale=0.3",
                          "method.loss_options.margin=0.1", "dataset=synthetic_tiny",
                          "protocol=tiny", f"run_dir={tmp_path}"])  # fmt: skip
    settings = run_settings(cfg)
    assert settings.lr_scale == 0.3
    method = build_method(settings.builder, backbone=TinyBackbone(), feature_dim=FEATURE_DIM,
                          num_classes=4, **settings.builder_kwargs)  # fmt: skip
    base, _ = make_optimizer(method, settings.protocol.optimizer, 10.0)
    scaled, _ = make_optimizer(method, settings.protocol.optimizer, 10.0, settings.lr_scale)
    for plain, tuned in zip(base.param_groups, scaled.param_groups, strict=True):
        assert tuned["lr"] == pytest.approx(0.3 * plain["lr"])


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize(("grid", "protocol"), [("methods", "embedded"),
                                               ("methods_birds", "embedded_birds")])  # fmt: skip
def test_tuned_files_name_their_report_and_match_the_grid(grid: str, protocol: str) -> None:
    """Every committed configs/tuned/<protocol>_<method>.yaml is one of its method's trials (of
    the grid or of its edge extension) and points to a committed tuning report that lists it."""
    from benchmark.tune_methods import extension_trial, ladders

    tune = grid_config(grid=grid)
    trials_of = trials(tune)
    below, above = ladders(tune)
    files = sorted((REPO / "configs/tuned").glob(f"{protocol}_*.yaml"))
    files = [f for f in files if f.stem.removeprefix(f"{protocol}_") in method_names()]
    for path in files:
        method = path.stem.removeprefix(f"{protocol}_")
        parsed = yaml.safe_load(path.read_text())
        ours = [t for t in trials_of if t.method == method]
        if not ours:  # an ablation row inheriting its parent's values
            continue
        points = [t.knobs for t in ours]
        ours += [extension_trial(tune, method, point, scale)
                 for point in points for scale in [*below, *above]]  # fmt: skip
        match = [t for t in ours if t.lr_scale == parsed["tuned"]["lr_scale"]
                 and {**t.fixed, **t.knobs} == flat(parsed["method"])]  # fmt: skip
        assert len({(t.index, t.lr_scale) for t in match}) == 1, path
        report = REPO / parsed["tuned"]["report"]
        assert report.is_file(), report
        assert f"| {method} | {match[0].index} |" in report.read_text(), (path, report)
        cfg = compose_config([f"method={method}", f"protocol={protocol}"])
        resolved = OmegaConf.to_container(cfg.tuned, resolve=True)
        assert resolved["lr_scale"] == parsed["tuned"]["lr_scale"]
        assert json.dumps(resolved["knobs"], sort_keys=True) == json.dumps(
            match[0].knobs, sort_keys=True
        )


def method_names() -> set[str]:
    """Method names with a configs/method/ file (``embedded_birds_x`` is no ``embedded`` file)."""
    return {p.stem for p in (REPO / "configs" / "method").glob("*.yaml")}


def test_ablation_rows_inherit_cnenet_values_but_keep_their_ablation(tmp_path, monkeypatch) -> None:
    import benchmark.tune_methods as tm

    monkeypatch.setattr(tm, "TUNED_DIR", tmp_path)
    tune = grid_config()
    grid = trials(tune)
    cnenet = next(t for t in grid if t.method == "cnenet" and t.lr_scale == 0.3
                  and t.knobs["semantic_discrete_weight"] == 3.0)  # fmt: skip
    tm.write_inherited(tune, grid, {"cnenet": cnenet.index}, "embedded", "reports/x.md")
    no_sd = yaml.safe_load((tmp_path / "embedded_bl_nmm_no_sd.yaml").read_text())
    assert no_sd["tuned"]["lr_scale"] == 0.3
    assert no_sd["method"] == {"semantic_alignment_weight": 3.0}  # L_SD stays off (weight 0)
    full = yaml.safe_load((tmp_path / "embedded_bl_nmm.yaml").read_text())
    assert full["method"] == {"semantic_discrete_weight": 3.0, "semantic_alignment_weight": 3.0}
    assert not (tmp_path / "embedded_baseline.yaml").exists()


def test_the_untrained_reference_is_reported_or_shown_missing(tmp_path: Path) -> None:
    import benchmark.tune_methods as tm

    assert tm.reference_scores(tmp_path, "synthetic", [1]) is None  # not run yet
    meta = {"metric": "map@r", "reference": None}
    assert "not run" in tm.reference_text(meta)
    meta["reference"] = {"map@r": 25.06, "recall@1": 50.13}
    text = tm.reference_text(meta)
    assert "map@r 25.1" in text and "recall@1 50.1" in text
    directory = tm.reference_dir(tmp_path, "synthetic", 1)
    assert directory == tmp_path / "reference" / "untrained" / "synthetic" / "seed1"


def curve_frame(tried: list[Trial], score) -> pd.DataFrame:
    return pd.DataFrame([
        {"method": t.method, "trial": t.index, "seed": 1, "status": "done",
         "knobs": json.dumps(t.knobs), "lr_scale": t.lr_scale, "map@r": score(t)}
        for t in tried
    ])  # fmt: skip


def test_an_edge_choice_is_extended_until_interior_or_the_ladder_ends() -> None:
    """A score rising with the rate walks up the ladder to its hard bound; one peaking inside
    the ladder stops there as interior; extension indices follow the grid's, one per (point,
    scale), so a rerun finds the same trial folders."""
    from benchmark.tune_methods import edge, edges, extend_edges

    tune = grid_config()
    below, above = [0.01, 0.003, 0.001], [1.0, 3.0, 10.0, 30.0]
    assert list(tune.extend.below) == below and list(tune.extend.above) == above
    for peak, walked, final in ((100.0, [1.0, 3.0, 10.0, 30.0], "bound"),
                                (1.0, [1.0, 3.0], "interior"),
                                (0.001, [0.01, 0.003, 0.001], "bound"),
                                (0.003, [0.01, 0.003, 0.001], "interior"),
                                (0.1, [], "interior")):  # fmt: skip
        tried = trials(tune, ["triplet"])

        def score(t: Trial, peak: float = peak) -> float:  # margin 0.1 wins at every scale
            return -abs(math.log(t.lr_scale / peak)) - 0.01 * t.knobs["loss_options.margin"]

        steps = []
        while new := extend_edges(tried, curve_frame(tried, score), tune, {}):
            assert len(new) == 1 and new[0].knobs == {"loss_options.margin": 0.1}
            assert new[0].index >= 6 and new[0].index not in {t.index for t in tried}
            steps.append(new[0].lr_scale)
            tried += new
        assert steps == walked, peak
        chosen = choose(curve_frame(tried, score), "map@r")
        assert edges(tried, chosen, tune) == {"triplet": final}
        pick = next(t for t in tried if t.index == chosen["triplet"])
        assert edge(tried, pick, tune)[1] is None
    from benchmark.tune_methods import extension_trial

    # 6 grid trials, then 100 indices per knob point: (margin 0.1, 3.0) -> 6 + 100 + 4
    assert extension_trial(tune, "triplet", {"loss_options.margin": 0.1}, 3.0).index == 110


def test_a_ladder_that_does_not_move_outward_is_refused() -> None:
    from benchmark.tune_methods import ladders

    tune = grid_config()
    tune.extend.above = [3.0, 1.0]
    with pytest.raises(TuningError, match=r"tune\.extend"):
        ladders(tune)
    tune.extend.above = [1.0]
    tune.extend.below = [0.05]
    with pytest.raises(TuningError, match=r"tune\.extend"):
        ladders(tune)


def test_birds_grid_is_the_same_grid_on_the_coarse_to_fine_data() -> None:
    birds, mark = grid_config(grid="methods_birds"), grid_config()
    assert OmegaConf.to_container(birds.knobs) == OmegaConf.to_container(mark.knobs)
    assert list(birds.lr_scales) == list(mark.lr_scales)
    cfg = compose_config(["+tune=methods_birds"])
    assert (cfg.protocol.name, cfg.dataset.name) == ("embedded_birds", "birds")
    assert cfg.protocol.data.eval_split == "val"
    trial = trials(birds, ["triplet"])[0]
    assert "+tune=methods_birds" in trial.overrides("methods_birds")


def test_docs_range_of_the_default_grid_choices_holds_in_the_tuned_files() -> None:
    """docs/protocol.md: on the default's data every choice ended interior, at lr_scale a to b."""
    tune = grid_config(grid="methods_birds")
    scales = [
        yaml.safe_load((REPO / "configs/tuned" / f"embedded_birds_{m}.yaml").read_text())["tuned"][
            "lr_scale"
        ]
        for m in OmegaConf.to_container(tune.knobs)
    ]
    text = " ".join((REPO / "docs/protocol.md").read_text().split())
    assert f"ended interior, at lr_scale {min(scales):g} to {max(scales):g}" in text
    report = (REPO / "reports/tuning/tune-methods-embedded_birds-birds.md").read_text()
    chosen = report.split("**Chosen**")[1]
    assert chosen.count("; interior (") == len(scales) and "hard bound" not in chosen
