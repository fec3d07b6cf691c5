"""Each vote records which demonstrations its prompt showed, as the prompt showed them."""

from __future__ import annotations

import json
import re

import pandas as pd

from llm_annotator import annotate, annotate_stream
from llm_annotator.core.task import parse_task_text
from llm_annotator.testing import user_text

TASK = """---
name: sentiment_demos
labels: [positive, negative, neutral]
output: sentiment
demonstrations: {pool: pool.csv, label: gold, k: 2, id_column: pid}
---
{% for demo in demonstrations %}Example {{ demo.pool_id }}: "{{ demo.text }}" -> {{ demo.label }}
{% endfor %}Classify: "{{ text }}" Reply {"sentiment": "..."}
"""


def test_votes_name_the_examples_shown(fake_server, tmp_path):
    pd.DataFrame({"pid": [f"p{i}" for i in range(6)], "text": [f"pool line {i}" for i in range(6)],
                  "gold": ["positive", "negative", "neutral"] * 2}).to_csv(tmp_path / "pool.csv", index=False)
    pd.DataFrame({"id": [f"s{i}" for i in range(5)], "text": [f"sentence {i}" for i in range(5)]}
                 ).to_csv(tmp_path / "data.csv", index=False)
    shown: dict[str, list[str]] = {}

    def answer(request):
        text = user_text(request)
        item = re.search(r'Classify: \\?"(sentence \d)', text).group(1)
        shown[item] = re.findall(r"Example (p\d)", text)
        return json.dumps({"sentiment": "neutral"})

    server = fake_server(answer)
    task = parse_task_text(TASK, "sentiment_demos.jinja")
    options = dict(id_column="id", api_base=server.url, api_key="sk-test", progress=False, samples=2)
    result = annotate(str(tmp_path / "data.csv"), task, ["openai/fake"], out=tmp_path / "run", **options)
    assert len(shown) == 5 and all(len(ids) == 2 for ids in shown.values())
    text_of = {f"s{i}": f"sentence {i}" for i in range(5)}
    for vote in result.votes.itertuples():
        assert vote.demonstrations == shown[text_of[vote.item_id]]
    lines = [json.loads(x) for x in (tmp_path / "run" / "votes.jsonl").read_text().splitlines()]
    assert all(line["demonstrations"] == shown[text_of[line["item_id"]]] for line in lines)
    # replayed from the cache, and streamed, the votes name the same examples
    again = annotate_stream(str(tmp_path / "data.csv"), task, ["openai/fake"], out=tmp_path / "streamed", **options)
    assert again.manifest["counts"]["cache_hits"] == 10
    streamed = [json.loads(x) for x in (tmp_path / "streamed" / "votes.jsonl").read_text().splitlines()]
    assert sorted((v["item_id"], v["demonstrations"]) for v in streamed) == sorted(
        (v["item_id"], v["demonstrations"]) for v in lines)


def test_a_task_without_demonstrations_writes_no_such_field(fake_server, tmp_path):
    server = fake_server(lambda request: json.dumps({"sentiment": "neutral"}))
    annotate([{"id": "a", "text": "hi"}], "sentiment", ["openai/fake"], id_column="id", api_base=server.url,
             api_key="sk-test", progress=False, out=tmp_path / "run", cache=False)
    assert "demonstrations" not in (tmp_path / "run" / "votes.jsonl").read_text()


def test_annotate_ranks_by_the_tasks_embedding_model(fake_server, tmp_path, monkeypatch):
    server = fake_server(lambda request: json.dumps({"sentiment": "neutral"}))
    monkeypatch.setenv("OPENAI_API_BASE", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    pd.DataFrame({"pid": [f"p{i}" for i in range(6)],
                  "text": ["tiger cloud", "river stone", "tiger river", "cloud stone", "plain words", "other words"],
                  "gold": ["positive", "negative", "neutral"] * 2}).to_csv(tmp_path / "pool.csv", index=False)
    pd.DataFrame({"id": ["a", "b"], "text": ["tiger cloud tiger", "stone river stone"]}).to_csv(
        tmp_path / "data.csv", index=False)
    task = parse_task_text(TASK.replace("id_column: pid}", "id_column: pid, select: similar, "
                                        "embedding_model: openai/bow}"), "sentiment_demos.jinja")
    result = annotate(str(tmp_path / "data.csv"), task, ["openai/fake"], id_column="id", progress=False,
                      out=tmp_path / "run", cache=False)
    shown = result.votes.set_index("item_id")["demonstrations"]
    assert shown["a"][-1] == "p0" and shown["b"][-1] == "p1"  # the most similar last
    assert len(server.embedding_requests[0]["input"]) == 6  # the pool, embedded once
