"""Copy the generated leaderboard (``reports/leaderboard.md``) into README.md's results block.

    python -m benchmark.report.readme [--report reports] [--readme README.md] [--check]

The block sits between ``<!-- leaderboard:start -->`` and ``<!-- leaderboard:end -->``; nothing
else of the README is touched. ``--check`` changes nothing and exits 1 when the block differs
(tests/test_readme.py runs the same check, so a hand-edited number fails the tests).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmark.atomic import write_atomic_text

START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def block(report_dir: Path, readme_dir: Path = Path(".")) -> str:
    """The leaderboard document without its title line, as the README in ``readme_dir`` shows
    it (the report's links made relative to that folder)."""
    lines = (Path(report_dir) / "leaderboard.md").read_text().splitlines()
    body = lines[1:] if lines and lines[0].startswith("# ") else lines
    text = "\n".join(body).strip("\n")
    prefix = Path(os.path.relpath(report_dir, readme_dir)).as_posix()
    return text.replace("](runs/", f"]({prefix}/runs/")


def with_block(readme: str, text: str, path: Path) -> str:
    if (
        readme.count(START) != 1
        or readme.count(END) != 1
        or readme.index(START) > readme.index(END)
    ):
        raise ValueError(f"{path}: expected one {START} ... {END} block")
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{text}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=Path("reports"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    args = parser.parse_args(argv)
    try:
        current = args.readme.read_text()
        wanted = with_block(current, block(args.report, args.readme.parent), args.readme)
    except (OSError, ValueError) as error:  # no report yet, or the markers were edited away
        raise SystemExit(f"error: {error}") from None
    if args.check:
        print("README block up to date" if wanted == current else "README block is stale")
        return 0 if wanted == current else 1
    if wanted != current:
        write_atomic_text(args.readme, wanted)
    print(f"{args.readme}: leaderboard block from {args.report / 'leaderboard.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
