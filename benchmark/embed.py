"""Embed a folder of images with a trained run's model and list each image's nearest neighbours::

    fgor-embed runs/default/cnenet/synthetic/seed1 path/to/images --out embeddings/ --k 5

(``python -m benchmark.embed ...`` without the console script.) Writes to ``--out``:
``embeddings.npy`` (N, D) float32 descriptors as evaluation computes them (not normalised),
``images.csv`` (index, path relative to the folder) and ``neighbours.csv`` (query, rank,
neighbour, cosine similarity; every image against the others, itself excluded). An image that
cannot be decoded stops it with its path (``--on-error fail``, the default) or is left out,
counted and listed in ``skipped.csv`` (``--on-error skip``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.atomic import save_atomic_npy, write_atomic_text
from benchmark.data.images import ImageLoadError, load_rgb
from benchmark.model import image_files, load_model, retrieve


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fgor-embed", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a run directory or its model.safetensors")
    parser.add_argument("images", type=Path, help="a folder of images (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the output files")
    parser.add_argument("--k", type=int, default=5, help="neighbours per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="an undecodable image: stop (fail) or leave it out (skip)",
    )
    return parser.parse_args(argv)


def readable(paths: list[Path], on_error: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The paths whose images decode, and (path, reason) of the others; with ``fail`` the
    first undecodable image is an error naming it."""
    kept, skipped = [], []
    for path in paths:
        try:
            load_rgb(path)
        except ImageLoadError as error:
            if on_error == "fail":
                raise ValueError(f"{error} (--on-error skip leaves such images out)") from error
            skipped.append((path, str(error)))
            continue
        kept.append(path)
    return kept, skipped


def embed_folder(
    model_path: Path,
    folder: Path,
    out: Path,
    k: int,
    batch_size: int = 64,
    device: str = "auto",
    on_error: str = "fail",
) -> dict[str, Path]:
    """Embed every image under ``folder``; write the output files; return their paths."""
    paths, skipped = readable(image_files(folder), on_error)
    if len(paths) < 2:
        raise ValueError(f"{folder}: {len(paths)} image(s) found; neighbours need at least 2")
    k = min(k, len(paths) - 1)
    model = load_model(model_path, device=device)
    embeddings = model.embed(paths, batch_size=batch_size)
    similarities, indices = retrieve(embeddings, k)
    names = [p.relative_to(folder).as_posix() for p in paths]
    neighbours = pd.DataFrame(
        {
            "query": np.repeat(names, k),
            "rank": np.tile(np.arange(1, k + 1), len(names)),
            "neighbour": [names[j] for j in indices.flatten().tolist()],
            "similarity": similarities.flatten().numpy().round(6),
        }
    )
    written = {
        "embeddings": out / "embeddings.npy",
        "images": out / "images.csv",
        "neighbours": out / "neighbours.csv",
    }
    save_atomic_npy(written["embeddings"], embeddings.numpy().astype(np.float32))
    index = pd.DataFrame({"index": range(len(names)), "path": names})
    write_atomic_text(written["images"], index.to_csv(index=False))
    write_atomic_text(written["neighbours"], neighbours.to_csv(index=False))
    if skipped:
        written["skipped"] = out / "skipped.csv"
        rows = pd.DataFrame([(p.relative_to(folder).as_posix(), why) for p, why in skipped],
                            columns=["path", "reason"])  # fmt: skip
        write_atomic_text(written["skipped"], rows.to_csv(index=False))
        print(f"fgor-embed: skipped {len(skipped)} undecodable image(s), listed in "
              f"{written['skipped']}", file=sys.stderr)  # fmt: skip
    return written


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        written = embed_folder(
            arguments.model, arguments.images, arguments.out, arguments.k,
            batch_size=arguments.batch_size, device=arguments.device,
            on_error=arguments.on_error,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        print(f"fgor-embed: {error}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
