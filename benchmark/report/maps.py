"""The health of the nuance maps of every method that has them, measured on the test images
(results.json ``health.maps``; benchmark/health.py): measures that can fail, unlike a dead-map
fraction under min-max normalisation, which is 0 by construction."""

from __future__ import annotations

from benchmark.report.grid import DASH, Grid, mean_std, number
from benchmark.report.tables import Column, Table

COLUMNS = (  # (collected column, header, digits)
    ("dead_map_fraction", "Dead %", 1),
    ("map_inactive", "Flat before norm. %", 1),
    ("map_overlap", "Mean overlap", 2),
    ("map_largest_overlap", "Largest overlap", 2),
    ("map_distinct", "Distinct maps", 1),
    ("map_equivariance", "Equivariance error", 3),
)


def map_health_tables(grid: Grid) -> list[Table]:
    tables = []
    for dataset in grid.datasets:
        methods = [m for m in grid.methods if grid.summary(m, dataset, "dead_map_fraction").n]
        if not methods:
            continue
        columns = [Column("Method"), Column("n", "r"), Column("Maps (l)", "r")]
        columns += [Column(header, "r") for _, header, _ in COLUMNS]
        table = Table(
            f"maps-{dataset}", f"Nuance-map health on the test images of {dataset}", columns
        )
        for method in methods:
            runs = grid.runs(method, dataset)
            declared = {d.get("num_maps") for d in runs["declared"] if isinstance(d, dict)}
            summaries = [(grid.summary(method, dataset, c), d) for c, _, d in COLUMNS]
            cells = [mean_std(s, digits) if s.n else DASH for s, digits in summaries]
            maps = ", ".join(str(m) for m in sorted(x for x in declared if x is not None))
            table.add(f"`{method}`", str(len(runs)), maps or DASH, *cells)
        table.notes.append(
            "Mean ± std over seeds. Dead: maps all zero after normalisation (min-max keeps every "
            "map's maximum at 1, so 0 is guaranteed there). Flat before norm.: maps whose "
            "response before normalisation spans less than 1e-3, or under 5% of the image's "
            "widest map. Overlap: cosine between two maps of an image (L_SD, Eq. 3), mean over "
            "the pairs, and the largest pair. Distinct maps: groups of maps whose mean cosine "
            "over the test images exceeds 0.9 count as one. Equivariance error: L_SA (Eq. 5) "
            "between the warped maps of an image and the maps of the warped image."
        )
        tables.append(table)
    return tables


LOCALISATION = (  # (collected column, header)
    ("loc_pointing", "Pointing (mean map)"),
    ("loc_best_pointing", "Pointing (best map)"),
    ("loc_nuance_mass", "Nuance mass"),
    ("loc_parts_found", "Nuance parts found"),
)
REFERENCES = (  # (name, pointing column, mass column)
    ("uniform map", "loc_uniform_pointing", "loc_uniform_mass"),
    ("random map", "loc_random_pointing", "loc_random_mass"),
)


def localisation_tables(grid: Grid) -> list[Table]:
    """Maps (or a baseline's CAM) against the generator's part ground truth, with the uniform
    and random references measured on the same images."""
    tables = []
    for dataset in grid.datasets:
        methods = [m for m in grid.methods if grid.summary(m, dataset, "loc_pointing").n]
        if not methods:
            continue
        columns = [Column("Maps of"), Column("n", "r")]
        columns += [Column(header, "r") for _, header in LOCALISATION]
        table = Table(
            f"localisation-{dataset}",
            f"Do the maps find the nuance parts? Test images of {dataset}, part ground truth",
            columns,
        )
        for method in methods:
            runs = grid.runs(method, dataset)
            with_maps = any(_has(c, "nuance_maps") for c in runs["capabilities"])
            kind = "nuance maps" if with_maps else "CAM"
            cells = [mean_std(grid.summary(method, dataset, c), 2) for c, _ in LOCALISATION]
            table.add(f"`{method}` ({kind})", str(len(runs)), *cells)
        scored = grid.results[grid.results["dataset"] == dataset]
        for name, pointing, mass in REFERENCES:
            values = scored[[pointing, mass]].dropna()
            table.add(
                f"{name} (reference)", str(len(values)),
                number(values[pointing].mean(), 2), DASH, number(values[mass].mean(), 2), DASH,
            )  # fmt: skip
        verdict = premise_text(grid, dataset, methods)
        if verdict:
            table.notes.append(verdict)
        table.notes.append(
            "Mean ± std over seeds, on the test images with at least one visible nuance part "
            "(benchmark/localisation.py). Pointing: share of images whose map peak lies within "
            "the tolerance (protocol.localisation.tolerance_px, one feature cell) of a visible "
            "part that carries the image's class nuances (the pointing game), per map, then "
            "the mean over the maps and the best map. Nuance mass: share of a map's mass within "
            "the tolerance of a nuance part. Nuance parts found: different nuance parts hit by "
            "the maps' peaks, per image (one map finds at most 1). CAM: the class activation "
            "map of the baseline's top-scoring class. References: a uniform map (its expected "
            "pointing is the hit region's area share) and random maps on the feature grid, on "
            "the same images."
        )
        tables.append(table)
    return tables


PREMISE_MARGIN = 0.2  # the best nuance map's pointing above the CAM's that the premise would show


def premise_text(grid: Grid, dataset: str, methods: list[str]) -> str:
    """One generated sentence per method with nuance maps: does its best map point at nuance
    parts at least PREMISE_MARGIN more often than the first CAM of the table, and how many
    different nuance parts do its maps find per image?"""
    kinds = {m: any(_has(c, "nuance_maps") for c in grid.runs(m, dataset)["capabilities"])
             for m in methods}  # fmt: skip
    cams = [m for m in methods if not kinds[m]]
    if not cams:
        return ""
    reference = grid.summary(cams[0], dataset, "loc_best_pointing").mean
    sentences = []
    for method in (m for m in methods if kinds[m]):
        best = grid.summary(method, dataset, "loc_best_pointing").mean
        found = grid.summary(method, dataset, "loc_parts_found").mean
        gap = best - reference
        sentences.append(
            f"`{method}`: its best map points at a nuance part in {number(best, 2)} of the images "
            f"against {number(reference, 2)} for `{cams[0]}`'s CAM ({number(gap, 2, sign=True)}), "
            f"{'at least' if gap >= PREMISE_MARGIN else 'less than'} the +{PREMISE_MARGIN:g} "
            "the nuance maps' premise would show; its maps find "
            f"{number(found, 2)} different nuance parts per image."
        )
    return " ".join(sentences)


def _has(capabilities: object, key: str) -> bool:
    return isinstance(capabilities, dict) and bool(capabilities.get(key))
