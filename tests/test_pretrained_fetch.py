"""Pretrained weights through timm: fetched from a hub (a local server on 127.0.0.1 standing in
for huggingface.co), then found again in the cache with the network off."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import timm
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
WEIGHTS_PATH = "/timm/test_resnet.r160_in1k/resolve/main/model.safetensors"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

PROBE = """
import json
from benchmark.backbone import build_backbone
backbone, info = build_backbone("test_resnet", pretrained=True, weights_file=None,
                                output_stride=32, mean=[0.5] * 3, std=[0.5] * 3)
state = backbone.body.state_dict() if hasattr(backbone, "body") else backbone.state_dict()
first = next(k for k in state if k.endswith("conv1.weight") or k.endswith("conv1.0.weight"))
total = float(state[first].double().sum())
print(json.dumps({"weights": info.weights, "key": first, "sum": total}))
"""


class _Hub(BaseHTTPRequestHandler):
    payload = b""
    requests: ClassVar[list[str]] = []

    def _headers(self) -> bool:
        type(self).requests.append(f"{self.command} {self.path}")
        if self.path != WEIGHTS_PATH:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(self.payload)))
        self.send_header("ETag", f'"{hashlib.sha256(self.payload).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        return True

    def do_HEAD(self) -> None:
        self._headers()

    def do_GET(self) -> None:
        if self._headers():
            self.wfile.write(self.payload)

    def log_message(self, *args) -> None:
        pass


def _probe(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_weights_come_from_the_hub_then_from_the_cache(tmp_path: Path) -> None:
    torch.manual_seed(7)
    model = timm.create_model("test_resnet", pretrained=False)
    for parameter in model.parameters():
        parameter.data.normal_()
    file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, file)
    _Hub.payload, _Hub.requests = file.read_bytes(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HOME=str(tmp_path / "hf"),
        HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
    )  # fmt: skip
    try:
        online = _probe(env)
    finally:
        server.shutdown()
        server.server_close()
    assert any(r.endswith(WEIGHTS_PATH) for r in _Hub.requests), _Hub.requests
    expected = float(model.state_dict()[online["key"]].double().sum())
    assert online["sum"] == pytest.approx(expected)
    assert online["weights"] == "timm:timm/test_resnet.r160_in1k"  # recorded in results.json
    # the server is gone: with the hub offline, the cached copy is used
    offline = _probe({**env, "HF_HUB_OFFLINE": "1"})
    assert offline["sum"] == pytest.approx(expected)
    assert offline["weights"] == online["weights"]
