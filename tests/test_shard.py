import json

import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError
from llm_annotator.core.shard import parse_shard, shard_of
from llm_annotator.outputs.merge import merge_runs
from llm_annotator.store.votelog import read_votes
from llm_annotator.testing import sampling_responder
from tests.conftest import sentences

LABELS = ["positive", "negative", "neutral"]


def test_four_shards_merged_equal_the_unsharded_job(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    rows = sentences(60)
    whole = annotate(rows, "sentiment", ["openai/fake"], samples=2, api_base=server.url, id_column="id",
                     out=tmp_path / "whole", progress=False)
    shards = []
    for i in range(4):
        part = annotate(rows, "sentiment", ["openai/fake"], samples=2, api_base=server.url, id_column="id",
                        out=tmp_path / f"shard{i}", progress=False, shard=f"{i}/4")
        shards.append(tmp_path / f"shard{i}")
        assert 0 < len(part.items) < 60
    merged = merge_runs(shards, tmp_path / "merged")
    key = lambda v: (v.item_id, v.annotator, v.sample_index)  # noqa: E731
    want = sorted((key(v), v.label, v.raw) for v in read_votes(tmp_path / "whole" / "votes.jsonl"))
    got = sorted((key(v), v.label, v.raw) for v in read_votes(tmp_path / "merged" / "votes.jsonl"))
    assert got == want and len(got) == 120
    assert len(merged.items) == 60
    assert merged.labels().set_index("item_id")["label"].to_dict() == whole.labels().set_index("item_id")["label"].to_dict()
    assert json.loads((tmp_path / "merged" / "run.json").read_text())["merged_from"][0].endswith("shard0")


def test_shards_partition_the_ids():
    ids = [f"item-{i}" for i in range(1000)]
    parts = [shard_of(i, 4) for i in ids]
    assert set(parts) == {0, 1, 2, 3} and all(150 < parts.count(k) < 350 for k in range(4))
    with pytest.raises(ConfigError, match="not I/N"):
        parse_shard("1-4")
    with pytest.raises(ConfigError, match=r"0\.\.N-1"):
        parse_shard("4/4")


def test_router_spreads_over_deployments_and_survives_a_dead_one(fake_server, tmp_path):
    good = fake_server(sampling_responder(LABELS, "sentiment"))
    from llm_annotator.testing import Reply

    bad = fake_server(lambda r: Reply(status=500))
    config = tmp_path / "router.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: annotator\n    litellm_params: {{model: openai/fake, api_base: '{bad.url}', api_key: sk-router-secret-1}}\n"
        f"  - model_name: annotator\n    litellm_params: {{model: openai/fake, api_base: '{good.url}', api_key: sk-router-secret-2}}\n"
        "num_retries: 3\nretry_after: 0\nallowed_fails: 1\ncooldown_time: 60\n")
    result = annotate(sentences(20), "sentiment", [{"model": "annotator", "router": str(config)}], samples=2,
                      id_column="id", out=tmp_path / "run", progress=False)
    assert result.votes["label"].notna().all() and len(result.votes) == 40
    assert set(result.votes["deployment"]) == {good.url}
    assert good.calls >= 20 and bad.calls >= 1
    run_text = (tmp_path / "run" / "run.json").read_text() + (tmp_path / "run" / "votes.jsonl").read_text()
    assert "sk-router-secret" not in run_text
    assert json.loads((tmp_path / "run" / "run.json").read_text())["models"][0]["router_deployments"][1]["api_base"] == good.url
