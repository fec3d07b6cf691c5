"""Workers as Ray tasks (--ray ADDRESS) on a local Ray instance that the test starts:
the votes of one process, written into one run directory with no lock between workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import ray

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError
from tests.test_workers import MODELS, answer, data, votes_of


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``ray start --head`` on 127.0.0.1; its workers get the test key from the environment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a loopback test cluster: no token for this process to find
    env = {**os.environ, "OPENAI_API_KEY": "sk-ray-test", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    temp = tmp_path_factory.mktemp("ray")
    started = subprocess.run([binary, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                              "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                              f"--temp-dir={temp}"], capture_output=True, text=True, env=env, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    yield f"127.0.0.1:{port}"
    ray.shutdown()
    subprocess.run([binary, "stop", "--force"], capture_output=True, env=env, timeout=120)
    os.environ.pop("RAY_AUTH_MODE", None)


def test_ray_workers_give_the_votes_of_one_process(fake_server, tmp_path, cluster, monkeypatch):
    server = fake_server(answer)
    path = data(tmp_path, 30)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ray-test")
    options = dict(samples=2, id_column="id", api_base=server.url, progress=False)
    annotate(str(path), "sentiment", MODELS, out=tmp_path / "one", cache=tmp_path / "c1", **options)
    calls = server.calls
    result = annotate(str(path), "sentiment", MODELS, out=tmp_path / "ray", cache=tmp_path / "c2", workers=2,
                      ray=cluster, **options)
    assert result.manifest["status"] == "complete" and server.calls == 2 * calls
    pd.testing.assert_frame_equal(votes_of(tmp_path / "one"), votes_of(tmp_path / "ray"))
    assert not list((tmp_path / "ray").glob("votes.w*.jsonl")) and not list((tmp_path / "ray").glob("ledger.w*"))
    assert len(result.votes) == 120

    # a budget is split evenly between the tasks and never passed: each keeps its own ledger
    priced = [{"model": "openai/fake-a", "price": [1000.0, 1000.0]}]
    capped = annotate(str(path), "sentiment", priced, out=tmp_path / "capped", cache=False, budget_usd=0.3,
                      concurrency=2, workers=2, ray=cluster, id_column="id", api_base=server.url, progress=False)
    ledger = sum(json.loads(x)["usd"] for x in (tmp_path / "capped" / "ledger.jsonl").read_text().splitlines())
    assert ledger <= 0.3 + 1e-9 and capped.manifest["budget"]["spent_usd"] == pytest.approx(ledger)
    assert 0 < capped.manifest["counts"]["valid"] < 30


def test_a_key_passed_as_api_key_is_not_sent_through_ray(tmp_path, cluster):
    path = data(tmp_path, 3)
    with pytest.raises(ConfigError, match="environment of every Ray node") as info:
        annotate(str(path), "sentiment", MODELS, out=tmp_path / "r", workers=2, ray=cluster, api_key="sk-secret-1",
                 api_base="http://127.0.0.1:9/v1", progress=False, cache=False)
    assert "sk-secret-1" not in str(info.value)
