"""Published numbers (reports/reference/paper_results.csv) and how our names map onto them.

The CSV has one row per (table, method, dataset): ``table,method,arch,dataset,R1,R2,R4,R8,source``
with empty cells where the paper prints no number. The mapping below is the only place that knows
which of our method/dataset names corresponds to which published row.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.report.collect import RECALL_KS, ResultsError

# our dataset name -> the paper's
DATASETS = {"cub": "CUB", "cars": "Cars", "aircraft": "Aircraft"}

# our method (fnmatch pattern) -> (table, the paper's method name); first match wins.
# The main comparison looks here; the ablation report uses TABLE1/TABLE3 directly.
COMPARISON = (
    ("cnenet", "T2", "CNENet"),
    ("proxynca_pp", "T2", "PNCA++"),
    ("dam_*", "T2", "DAM"),  # published with Inception-V3: the arch column says so
    ("baseline", "T1", "BL"),
)

# CNENet Table 1 (CUB R@1), in the paper's row order: (our method, the paper's row name).
TABLE1 = (
    ("baseline", "BL"),
    ("bl_nmm_no_sd_sa", "BL+NMM(w/o LSD&LSA)"),
    ("bl_nmm_no_sd", "BL+NMM(w/o LSD)"),
    ("bl_nmm_no_sa", "BL+NMM(w/o LSA)"),
    ("bl_nmm", "BL+NMM"),
    ("bl_nmm_attention", "BL+NMM+SelfAttention"),
    ("cnenet", "BL+NMM+NEM"),
    ("cnenet_triplet", "BL+NMM+NEM+Triplet"),
)

# CNENet Table 3 (CUB, number l of CARE maps).
TABLE3 = (("cnenet_l2", "l=2"), ("cnenet", "l=4"), ("cnenet_l5", "l=5"))

ARCHITECTURES = {"R50": "ResNet-50", "In3": "Inception-V3"}
COLUMNS = ("table", "method", "arch", "dataset", "R1", "R2", "R4", "R8", "source")


@dataclass(frozen=True)
class PaperRow:
    """One published row: R@1/2/4/8 (NaN where the paper prints none)."""

    table: str
    method: str
    arch: str
    dataset: str
    recalls: tuple[float, float, float, float]
    source: str

    def recall(self, k: int) -> float:
        return self.recalls[RECALL_KS.index(k)]


class Reference:
    """Lookup of published numbers by our method and dataset names."""

    def __init__(self, frame: pd.DataFrame | None = None, path: Path | None = None) -> None:
        self.path = path
        self.rows: dict[tuple[str, str, str], PaperRow] = {}
        for record in (frame if frame is not None else pd.DataFrame()).itertuples(index=False):
            recalls = tuple(float(getattr(record, f"R{k}")) for k in RECALL_KS)
            row = PaperRow(
                str(record.table), str(record.method), str(record.arch), str(record.dataset),
                recalls, str(record.source),
            )  # fmt: skip
            self.rows[(row.table, row.method, row.dataset)] = row

    @staticmethod
    def paper_dataset(dataset: str) -> str | None:
        """The paper's name for our dataset; None for datasets it does not report."""
        return DATASETS.get(dataset)

    def find(self, table: str, paper_method: str, dataset: str) -> PaperRow | None:
        paper_dataset = self.paper_dataset(dataset)
        if paper_dataset is None:
            return None
        return self.rows.get((table, paper_method, paper_dataset))

    def comparison(self, method: str, dataset: str) -> PaperRow | None:
        """The published row printed beside ``method`` in the main comparison, if any."""
        for pattern, table, paper_method in COMPARISON:
            if fnmatch.fnmatchcase(method, pattern):
                return self.find(table, paper_method, dataset)
        for table, mapping in (("T1", TABLE1), ("T3", TABLE3)):
            for ours, paper_method in mapping:
                if ours == method:
                    return self.find(table, paper_method, dataset)
        return None


def load_reference(path: Path | None) -> Reference:
    """Read the published-numbers CSV; ``None`` gives an empty reference (every paper cell —)."""
    if path is None:
        return Reference()
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"table": str, "method": str, "arch": str, "dataset": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ResultsError(f"{path}: cannot read the published numbers ({error})") from error
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {', '.join(missing)}")
    for k in RECALL_KS:
        values = pd.to_numeric(frame[f"R{k}"], errors="coerce")
        bad = frame[f"R{k}"].notna() & values.isna()
        if bad.any():
            line = int(bad.to_numpy().nonzero()[0][0]) + 2
            raise ResultsError(
                f"{path}: line {line}: R{k} = {frame[f'R{k}'][bad].iloc[0]!r} is not a number"
            )
        frame[f"R{k}"] = values
    return Reference(frame, path)


def architecture_code(backbone: str) -> str:
    """Our timm backbone name as the paper's architecture code (R50, In3) or itself."""
    name = backbone.lower()
    if name.startswith("resnet50"):
        return "R50"
    if name.startswith(("inception_v3", "inception-v3")):
        return "In3"
    return backbone
