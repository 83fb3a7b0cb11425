"""The page `dvc plots show` writes, made to work offline: ``.dvc/plots/offline.html``.

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so without network it is blank.
.dvc/config names this file as ``plots.html_template``: DVC's template with the three libraries'
minified builds inlined (about 830 kB) and without the ``{scripts}`` slot DVC fills with CDN tags.
The file is committed, so a clone renders its plots with no set-up. To update it (versions of the
majors DVC's page asks for, pinned with the npm registry's sha512 integrity)::

    npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0   # in an empty folder
    python -m benchmark.dvc_plots_page <that folder>

vega, vega-lite and vega-embed are BSD-3-Clause, Copyright (c) 2015, University of Washington
Interactive Data Lab; the page keeps the licence text.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / ".dvc" / "plots" / "offline.html"
# (package, version, file inlined from its npm tarball, the tarball's npm integrity), load order
PACKAGES = (
    ("vega", "5.33.1", "package/build/vega.min.js",
     "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="),
    ("vega-lite", "5.23.0", "package/build/vega-lite.min.js",
     "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="),
    ("vega-embed", "6.29.0", "package/build/vega-embed.min.js",
     "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="),
)  # fmt: skip
LICENCE_FILE = "package/LICENSE"  # vega-lite's; vega's tarball has none, the text is the same
# DVC's slots ({plot_divs} required): str.replace fills them anywhere in the page, scripts too
SLOTS = ("{plot_divs}", "{refresh_tag}", "{scripts}")
HEAD = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots</title>
<!-- Written by python -m benchmark.dvc_plots_page: {versions},
inlined from their npm tarballs so that the page needs no network. They are BSD-3-Clause:

{licence}-->
<style>
body { display: flex; flex-wrap: wrap; gap: 12px; font-family: sans-serif; }
</style>
"""
BODY = """</head>
<body>
{plot_divs}
</body>
</html>
"""


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def read_member(tarball: Path, member: str) -> str:
    with tarfile.open(tarball) as archive:
        handle = archive.extractfile(member)
        if handle is None:
            raise ValueError(f"{tarball}: {member} is not a file")
        return handle.read().decode("utf-8")


def page(npm_dir: Path) -> str:
    """The HTML template from the npm tarballs in ``npm_dir`` (each checked against its pin)."""
    scripts, licence = [], ""
    for name, version, member, pinned in PACKAGES:
        tarball = Path(npm_dir) / f"{name}-{version}.tgz"
        if integrity(tarball.read_bytes()) != pinned:
            raise ValueError(f"{tarball}: not the pinned {name} {version} (integrity differs)")
        lines = read_member(tarball, member).splitlines()
        script = "\n".join(x for x in lines if not x.startswith("//# sourceMappingURL="))
        if any(slot in script for slot in SLOTS) or "</script" in script.lower():
            raise ValueError(f"{tarball}: {member} cannot be inlined in DVC's template")
        scripts.append(f"<script>/* {name} {version} */\n{script}\n</script>\n")
        if name == "vega-lite":
            licence = read_member(tarball, LICENCE_FILE)
    versions = ", ".join(f"{name} {version}" for name, version, _, _ in PACKAGES)
    head = HEAD.replace("{versions}", versions).replace("{licence}", licence)
    return head + "".join(scripts) + BODY


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("npm_dir", type=Path, help="folder holding the three npm pack tarballs")
    parser.add_argument("--out", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page(args.npm_dir), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
