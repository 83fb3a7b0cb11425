"""Set-up and entry points that need nothing but Python 3.11 (stdlib only).

    python3 tasks.py setup   # create .venv from requirements.lock (then: source .venv/bin/activate)
    python3 tasks.py repro   # create .venv, `dvc repro`, then the README's results block
    python3 tasks.py test    # create .venv from requirements.lock, then the test suite

Further arguments are passed on (`python3 tasks.py test -k evaluate`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".installed"


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    """Create .venv and install the exact versions of requirements.lock (once per lock)."""
    if STAMP.is_file() and STAMP.read_text() == fingerprint():
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(LOCK)], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(fingerprint())


def run(command: list[str]) -> int:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.setdefault("PYTHONHASHSEED", "0")
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def main(argv: list[str]) -> int:
    tasks = {
        "repro": [str(BIN / "dvc"), "repro"],
        "test": [str(BIN / "python"), "-m", "pytest"],
        "setup": None,
    }
    if not argv or argv[0] not in tasks:
        print(__doc__)
        return 2
    ensure_environment()
    command = tasks[argv[0]]
    code = 0 if command is None else run([*command, *argv[1:]])
    if argv[0] == "repro" and code == 0:  # the README's results block from the new report
        code = run([str(BIN / "python"), "-m", "benchmark.report.readme"])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
