"""Merging the run directories of a sharded job: each shard once, one job, and honest about gaps.

``merge_runs`` lives in ``llm_annotator.outputs.merge``; it is imported in each test.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from llm_annotator import RunDirError, annotate
from llm_annotator.testing import sampling_responder
from tests.conftest import sentences

KEY = "sk-test"
LABELS = ["positive", "negative", "neutral"]


def shard(server, index, out, **options):
    # gpt-4o is priced by LiteLLM's map: every vote has a cost
    return annotate(sentences(20), "sentiment", ["openai/gpt-4o"], api_base=server.url, api_key=KEY,
                    id_column="id", shard=f"{index}/2", out=out, progress=False, **options)


@pytest.fixture
def shards(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    d0, d1 = tmp_path / "shard0", tmp_path / "shard1"
    shard(server, 0, d0, temperature=1.0)
    shard(server, 1, d1, temperature=1.0)
    return server, d0, d1


def vote_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "votes.jsonl").read_text().splitlines()]


def test_a_shard_merged_twice_is_refused(shards, tmp_path):
    from llm_annotator.outputs.merge import merge_runs

    _, d0, _ = shards
    with pytest.raises(RunDirError, match=r"twice|overlap"):
        merge_runs([d0, d0], tmp_path / "merged")
    copy = tmp_path / "copy_of_shard0"
    shutil.copytree(d0, copy)
    with pytest.raises(RunDirError, match=r"twice|overlap"):
        merge_runs([d0, copy], tmp_path / "merged2")


def test_merged_cost_is_the_cost_of_the_merged_votes(shards, tmp_path):
    from llm_annotator.outputs.merge import merge_runs

    server, d0, d1 = shards
    merged = merge_runs([d0, d1], tmp_path / "merged")
    votes = vote_lines(tmp_path / "merged")
    assert len(votes) == 20
    cost = sum(v["cost_usd"] for v in votes)
    assert cost > 0
    assert merged.manifest["cost_usd"] == pytest.approx(cost)
    # a shard re-run (all of it resumed, nothing spent) still holds the votes it paid for
    calls = server.calls
    shard(server, 0, d0, temperature=1.0)
    assert server.calls == calls
    again = merge_runs([d0, d1], tmp_path / "merged_again")
    assert again.manifest["cost_usd"] == pytest.approx(cost)
    assert json.loads((tmp_path / "merged_again" / "run.json").read_text())["cost_usd"] == pytest.approx(cost)


def test_shards_of_another_job_are_refused(fake_server, tmp_path):
    from llm_annotator.outputs.merge import merge_runs

    server = fake_server(sampling_responder(LABELS, "sentiment"))
    d0, d1 = tmp_path / "shard0", tmp_path / "shard1"
    shard(server, 0, d0, temperature=1.0)
    shard(server, 1, d1, temperature=0.2)
    with pytest.raises(RunDirError, match="temperature"):
        merge_runs([d0, d1], tmp_path / "merged")
    assert not (tmp_path / "merged" / "run.json").exists()


def test_a_merge_with_a_missing_shard_is_partial(shards, tmp_path):
    from llm_annotator.outputs.merge import merge_runs

    _, d0, d1 = shards
    partial = merge_runs([d0], tmp_path / "partial")
    assert partial.manifest["status"] == "partial"
    assert partial.manifest["missing_shards"] == [1]
    on_disk = json.loads((tmp_path / "partial" / "run.json").read_text())
    assert on_disk["status"] == "partial" and on_disk["missing_shards"] == [1]
    whole = merge_runs([d0, d1], tmp_path / "whole")
    assert whole.manifest["status"] == "complete"
    assert not whole.manifest.get("missing_shards")

    proc = subprocess.run([sys.executable, "-m", "llm_annotator", "merge", str(d0), "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert any("partial" in line for line in proc.stdout.splitlines()), proc.stdout
