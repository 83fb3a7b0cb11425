"""The model API (benchmark/model.py): model.safetensors rebuilds the evaluated model without the
dataset, ``embed`` reproduces the evaluation's descriptors, fgor-embed, the guide's example
(docs/guide.md) and the console scripts."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from benchmark.data.manifest import read_manifest, select_splits
from benchmark.embed import main as embed_main
from benchmark.model import load_model, retrieve
from benchmark.model_file import METADATA_KEY, MODEL_FILE, read_model_metadata
from benchmark.train import train

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def split_paths(dataset_root: Path, split: str = "test") -> list[Path]:
    """The split's image files in manifest order (the order of test_embeddings.npy)."""
    frame = read_manifest(dataset_root / "manifest.csv")
    return [dataset_root / p for p in frame["path"].iloc[select_splits(frame, [split])]]


def assert_model_file_reproduces_evaluation(run_dir: Path, dataset_root: Path) -> None:
    """load_model(run_dir).embed on the test images == the run's test_embeddings.npy, from a
    copy of model.safetensors alone."""
    expected = np.load(run_dir / "test_embeddings.npy")
    alone = run_dir.parent / f"{run_dir.name}_model_only" / MODEL_FILE
    alone.parent.mkdir(exist_ok=True)
    shutil.copy(run_dir / MODEL_FILE, alone)
    model = load_model(alone, device="cpu")
    got = model.embed(split_paths(dataset_root)[: len(expected)], batch_size=7).numpy()
    assert got.shape == expected.shape == (len(expected), model.embedding_dim)
    # other batches, other float rounding: unnormalised descriptors reach |x| ~ 100 (float32
    # steps of 1e-5); compare to 1e-6 of each row's norm, and the normalised ones to 1e-5
    norms = np.linalg.norm(expected, axis=1, keepdims=True)
    assert (np.abs(got - expected) <= 1e-6 * norms).all()
    np.testing.assert_allclose(got / norms, expected / norms, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def baseline_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny baseline run (trained 2 epochs and evaluated)."""
    from benchmark.config import compose_config

    runs = tmp_path_factory.mktemp("model_runs")
    cfg = compose_config(
        ["dataset=synthetic_tiny", "protocol=tiny", f"dataset.root={tiny_root}",
         f"runs_root={runs}", "progress=false", "method=baseline"]
    )  # fmt: skip
    train(cfg)
    return Path(cfg.run_dir)


def test_model_file_reproduces_the_evaluation(baseline_run: Path, tiny_root: Path) -> None:
    assert_model_file_reproduces_evaluation(baseline_run, tiny_root)


def test_model_file_metadata_is_one_key_and_complete(baseline_run: Path) -> None:
    with safe_open(str(baseline_run / MODEL_FILE), "pt") as handle:
        assert list(handle.metadata()) == [METADATA_KEY]
    metadata = read_model_metadata(baseline_run / MODEL_FILE)
    assert metadata["method"] == {
        "name": "baseline",
        "builder": "baseline",
        "kwargs": {"pooling": "avg", "label_smoothing": 0.0},
    }
    labels = np.load(baseline_run / "test_labels.npy")
    assert metadata["num_classes"] >= 2 and metadata["protocol"] == "tiny"
    assert metadata["embedding_dim"] == np.load(baseline_run / "test_embeddings.npy").shape[1]
    assert metadata["image"]["resize"] == 40 and metadata["image"]["crop"] == 32
    assert len(metadata["image"]["mean"]) == len(metadata["image"]["std"]) == 3
    assert metadata["channels_last"] is True  # the tiny protocol evaluates NHWC, as embedded
    assert metadata["backbone"]["initial_weights"] == "random init"
    assert metadata["backbone"]["initial_weights_sha256"] is None
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", metadata["git_commit"])
    assert len(labels) > 0


def test_model_file_is_byte_reproducible(baseline_run: Path, tiny_root: Path) -> None:
    """Evaluating the same checkpoint again writes the same bytes."""
    from benchmark.config import compose_config

    before = (baseline_run / MODEL_FILE).read_bytes()
    runs_root = baseline_run.parents[3]
    cfg = compose_config(
        ["dataset=synthetic_tiny", "protocol=tiny", f"dataset.root={tiny_root}",
         f"runs_root={runs_root}", "progress=false", "method=baseline", "stage=evaluate"]
    )  # fmt: skip
    assert Path(cfg.run_dir) == baseline_run
    train(cfg)
    assert (baseline_run / MODEL_FILE).read_bytes() == before


def test_embed_takes_paths_pil_images_and_tensors(baseline_run: Path, tiny_root: Path) -> None:
    model = load_model(baseline_run, device="cpu")
    paths = split_paths(tiny_root)[:3]
    expected = model.embed(paths)
    pil = [Image.open(p) for p in paths]
    uint8 = [torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1) for im in pil]
    floats = [t.float() / 255 for t in uint8]
    arrays = [np.asarray(im.convert("RGB")) for im in pil]  # (H, W, 3)
    for images in (pil, uint8, floats, arrays):
        torch.testing.assert_close(model.embed(images), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(3, H, W\) or \(H, W, 3\)"):
        model.embed([torch.zeros(4, 8, 8)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.embed([uint8[0].float()])
    # one image on its own: a str or Path, a PIL image, one tensor; a stacked batch is N images
    for one in (str(paths[0]), paths[0], pil[0], uint8[0], arrays[0]):
        torch.testing.assert_close(model.embed(one), expected[:1], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.embed(torch.stack(uint8)), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.embed(np.stack(arrays)), expected, rtol=0, atol=1e-6)


def test_load_model_errors_name_the_file(tmp_path: Path, baseline_run: Path) -> None:
    with pytest.raises(FileNotFoundError, match="stage=evaluate"):
        load_model(tmp_path)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(other), metadata={"fgor_bench": "{}"})
    with pytest.raises(ValueError, match=r"other\.safetensors.*not a file written by"):
        load_model(other)


def test_retrieve_against_a_gallery_matches_a_plain_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    queries, gallery = (
        torch.randn(5, 4, generator=generator),
        torch.randn(9, 4, generator=generator),
    )
    similarities, indices = retrieve(queries, 3, gallery)
    for q in range(5):
        cosines = [
            float(queries[q] @ g / (queries[q].norm() * g.norm())) for g in gallery
        ]  # the formula, item by item
        order = sorted(range(9), key=lambda j: -cosines[j])[:3]
        assert indices[q].tolist() == order
        assert similarities[q].tolist() == pytest.approx([cosines[j] for j in order], abs=1e-6)


def test_retrieve_takes_numpy_descriptors() -> None:
    """fgor-embed's embeddings.npy searched directly: numpy gives what torch gives."""
    generator = torch.Generator().manual_seed(1)
    queries = torch.randn(4, 3, generator=generator)
    gallery = torch.randn(7, 3, generator=generator)
    for pair in ((queries, gallery), (queries, None)):
        expected = retrieve(pair[0], 2, pair[1])
        numpy_pair = [None if x is None else x.numpy() for x in pair]
        got = retrieve(numpy_pair[0], 2, numpy_pair[1])
        assert torch.equal(got[1], expected[1]) and torch.allclose(got[0], expected[0])
    with pytest.raises(ValueError, match=r"queries must be \(N, D\)"):
        retrieve(np.zeros(3), 1)


def test_fgor_embed_skips_or_stops_at_an_undecodable_image(
    baseline_run: Path, tiny_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for path in split_paths(tiny_root)[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert embed_main([str(baseline_run), str(folder), "--out", str(out), "--k", "1"]) == 2
    assert not out.exists()  # stopped before writing anything
    code = embed_main([str(baseline_run), str(folder), "--out", str(out), "--k", "1",
                       "--on-error", "skip"])  # fmt: skip
    assert code == 0 and np.load(out / "embeddings.npy").shape[0] == 3
    skipped = (out / "skipped.csv").read_text().splitlines()
    assert skipped[0] == "path,reason" and skipped[1].startswith("broken.png,")


def test_fgor_embed_writes_embeddings_and_neighbours(
    baseline_run: Path, tiny_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    for path in split_paths(tiny_root)[:6]:
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.parent.name / path.name)
    out = tmp_path / "out"
    assert embed_main([str(baseline_run), str(folder), "--out", str(out), "--k", "2"]) == 0
    embeddings = np.load(out / "embeddings.npy")
    names = (out / "images.csv").read_text().splitlines()[1:]
    files = sorted(p for p in folder.rglob("*.png"))
    assert [line.split(",", 1)[1] for line in names] == [
        p.relative_to(folder).as_posix() for p in files
    ]
    np.testing.assert_allclose(embeddings, load_model(baseline_run).embed(files), atol=1e-6)
    rows = [line.split(",") for line in (out / "neighbours.csv").read_text().splitlines()]
    assert rows[0] == ["query", "rank", "neighbour", "similarity"] and len(rows) == 1 + 6 * 2
    _, indices = retrieve(torch.from_numpy(embeddings), 2)
    paths = [line.split(",", 1)[1] for line in names]
    assert [r[2] for r in rows[1:]] == [paths[j] for j in indices.flatten().tolist()]
    assert all(r[0] != r[2] for r in rows[1:])
    assert embed_main([str(baseline_run), str(tmp_path / "none"), "--out", str(out)]) == 2


def readme_example() -> str:
    text = (REPO / "docs" / "guide.md").read_text()
    block = re.search(
        r"<!-- embed-example:start -->\n```python\n(.*?)```\n<!-- embed-example:end", text, re.S
    )
    assert block, "docs/guide.md lacks the embed example between its markers"
    return block.group(1)


def test_readme_embed_example_runs(
    baseline_run: Path, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's example (docs/guide.md), verbatim, on a run linked where it expects it."""
    run_dir = tmp_path / "runs" / "adhoc" / "baseline" / "synthetic" / "seed1"
    run_dir.parent.mkdir(parents=True)
    run_dir.symlink_to(baseline_run)
    images = split_paths(tiny_root)[:5]
    (tmp_path / "my_images").mkdir()
    for path in images:
        shutil.copy(path, tmp_path / "my_images" / path.name)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), "docs/guide.md", "exec"), namespace)
    lines = printed.getvalue().splitlines()
    assert len(lines) == 5 + 1
    for line, path in zip(lines, sorted(images), strict=False):
        query, found = line.split(" -> ")
        assert query == path.name and len(eval(found)) == 3 and path.name not in found
    expected = np.load(baseline_run / "test_embeddings.npy")[: len(images)]
    np.testing.assert_allclose(namespace["descriptors"].numpy(), expected, rtol=1e-5, atol=1e-4)
    assert lines[-1].startswith("baseline {")


def test_console_scripts_resolve_to_callables() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"fgor-run", "fgor-tune", "fgor-report", "fgor-embed"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))


def test_fgor_embed_help_runs_as_a_module() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "benchmark.embed", "--help"], cwd=REPO, capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0 and "model.safetensors" in done.stdout
