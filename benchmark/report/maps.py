"""The health of the nuance maps of every method that has them, measured on the test images
(results.json ``health.maps``; benchmark/health.py): measures that can fail, unlike a dead-map
fraction under min-max normalisation, which is 0 by construction."""

from __future__ import annotations

from benchmark.report.grid import DASH, Grid, mean_std
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
