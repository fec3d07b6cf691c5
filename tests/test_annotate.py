"""The whole path against a real HTTP server on 127.0.0.1, reached through LiteLLM."""

import json

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError, DataError
from llm_annotator.testing import Reply, attempts, sampling_responder, schema_labels, user_text
from tests.conftest import sentences

LABELS = ["positive", "negative", "neutral"]
CANARY = "sk-canary-7f3a9b1c5d2e8f4a6b0c"


def run(server, rows=None, **options):
    options.setdefault("api_key", CANARY)
    return annotate(rows if rows is not None else sentences(12), "sentiment", ["openai/fake"],
                    api_base=server.url, progress=False, **options)


def test_repeated_samples_are_distinct_and_soft_labels_follow_votes(fake_server):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    result = run(server, samples=5, temperature=1.0, id_column="id")
    votes = result.votes
    assert len(votes) == 12 * 5 and votes["label"].notna().all()
    assert sorted(votes["sample_index"].unique()) == [0, 1, 2, 3, 4]
    per_item = votes.groupby("item_id")["label"].nunique()
    assert (per_item > 1).any()  # repeated samples are distinct draws
    soft = result.soft_labels()
    item = votes["item_id"].iloc[0]
    shares = votes[votes["item_id"] == item]["label"].value_counts(normalize=True)
    for label in LABELS:
        assert soft.loc[item, label] == pytest.approx(shares.get(label, 0.0))
    labels = result.labels()
    assert labels["n_requested"].eq(5).all() and labels["n_valid"].eq(5).all()
    assert (labels["confidence"] >= 1 / 3).all()


def test_n_is_used_where_honoured_and_k_calls_where_ignored(fake_server):
    honours = fake_server(sampling_responder(LABELS, "sentiment"))
    run(honours, samples=4)
    assert honours.calls == 12 and all(r.get("n") == 4 for r in honours.requests)
    ignores = fake_server(sampling_responder(LABELS, "sentiment"), honour_n=False)
    result = run(ignores, samples=4, cache=False)
    assert len(result.votes) == 48 and result.votes["label"].notna().all()
    # every call yields one vote: those sent with n=4 got one choice, the rest went singly
    assert ignores.calls == 12 * 4
    assert result.manifest["n_not_honoured"] == ["openai/fake"]


def test_second_run_replays_the_cache_with_zero_calls(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    first = run(server, samples=3, out=tmp_path / "a")
    calls = server.calls
    second = run(server, samples=3, out=tmp_path / "b")
    assert server.calls == calls
    cols = ["item_id", "annotator", "sample_index", "label", "raw"]
    pd.testing.assert_frame_equal(first.votes[cols], second.votes[cols])
    assert second.votes["cached"].all() and second.manifest["counts"]["cache_hits"] == 36


def test_template_change_invalidates_only_the_rows_it_changes(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "label"))
    rows = sentences(10)
    template = tmp_path / "t.jinja"
    template.write_text("---\nlabels: [positive, negative, neutral]\noutput: label\n---\n"
                        "Text: {{ text }}\n")
    annotate(rows, template, ["openai/fake"], api_base=server.url, progress=False)
    assert server.calls == 10
    template.write_text("---\nlabels: [positive, negative, neutral]\noutput: label\n---\n"
                        "Text: {{ text }}{% if id == 's3' %} (sarcastic){% endif %}\n")
    annotate(rows, template, ["openai/fake"], api_base=server.url, progress=False)
    assert server.calls == 11
    assert "(sarcastic)" in user_text(server.requests[-1])


def test_logprobs_become_distributions(fake_server):
    def respond(request):
        return Reply(content='{"sentiment": "positive"}',
                     top_logprobs={"positive": 0.7, "negative": 0.2, "neutral": 0.1})

    server = fake_server(respond)
    result = run(server, samples=1)
    assert server.requests[0]["logprobs"] is True
    dist = result.votes["distribution"].iloc[0]
    assert dist == pytest.approx({"positive": 0.7, "negative": 0.2, "neutral": 0.1})
    assert result.soft_labels().iloc[0].tolist() == pytest.approx([0.7, 0.2, 0.1])


def test_json_schema_with_the_label_enum_is_sent(fake_server):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    run(server, rows=sentences(1))
    assert schema_labels(server.requests[0]) == LABELS
    assert server.requests[0]["response_format"]["type"] == "json_schema"


def test_out_of_set_answers_are_invalid_votes_with_raw_text(fake_server):
    def respond(request):
        return '{"sentiment": "frustration"}' if "number 1 " in user_text(request) else '{"sentiment": "neutral"}'

    server = fake_server(respond)
    result = run(server, samples=2, id_column="id")
    bad = result.votes[result.votes["item_id"] == "s1"]
    assert bad["label"].isna().all()
    assert set(bad["error"]) == {"out_of_label_set:frustration"}
    assert set(bad["raw"]) == {'{"sentiment": "frustration"}'}
    labels = result.labels().set_index("item_id")
    assert labels.loc["s1", "n_valid"] == 0 and pd.isna(labels.loc["s1", "label"])
    assert labels.loc["s2", "label"] == "neutral"
    assert result.manifest["counts"]["invalid"] == 2


def test_rate_limits_and_server_errors_are_retried_honouring_retry_after(fake_server):
    respond = attempts(Reply(status=429, headers={"Retry-After": "0.2"}), Reply(status=503),
                       then='{"sentiment": "positive"}')

    server = fake_server(respond)
    result = run(server, rows=sentences(4))
    assert result.votes["label"].eq("positive").all()
    assert server.calls == 12
    assert result.manifest["counts"]["errors"] == 0


def test_failures_after_retries_become_error_votes_and_the_run_goes_on(fake_server):
    def respond(request):
        if "number 0 " in user_text(request):
            return Reply(content="x", delay=2.0)  # slower than the timeout
        if "number 1 " in user_text(request):
            return Reply(status=500)
        if "number 2 " in user_text(request):
            return Reply(body=b'{"id": "x", "choi')  # truncated JSON
        return '{"sentiment": "negative"}'

    server = fake_server(respond)
    result = annotate(sentences(5), "sentiment", [{"model": "openai/fake", "timeout": 0.5, "max_retries": 1}],
                      api_base=server.url, api_key=CANARY, id_column="id", progress=False)
    errors = result.votes.set_index("item_id")["error"]
    assert errors["s0"].startswith("timeout: ")
    assert errors["s1"].startswith("server_error: ") and "scripted status 500" in errors["s1"]
    assert errors["s2"].split(":")[0] in {"server_error", "api_error"}
    assert errors[["s3", "s4"]].isna().all()
    assert result.manifest["counts"]["errors"] == 3


def test_budget_holds_under_concurrency(fake_server):
    server = fake_server(lambda r: '{"sentiment": "neutral"}', latency=0.05)
    # gpt-4o prices through LiteLLM's map; the fake server bills a few tokens each
    result = annotate(sentences(200), "sentiment", [{"model": "openai/gpt-4o", "concurrency": 64}],
                      api_base=server.url, api_key=CANARY, budget_usd=0.01, progress=False)
    spent = result.manifest["cost_usd"]
    assert 0 < spent <= 0.01
    assert result.manifest["status"] == "stopped_by_budget"
    assert result.manifest["counts"]["not_issued"] > 0
    assert server.calls < 200


def test_exports_carry_inputs_probabilities_and_neutralise_formulas(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    rows = [*sentences(3), {"id": "evil", "text": "=HYPERLINK(\"http://x\")"}]
    result = run(server, rows=rows, samples=2, id_column="id")
    csv = pd.read_csv(result.to_csv(tmp_path / "l.csv"), dtype=str)
    assert list(csv.columns[:3]) == ["item_id", "id", "text"]
    assert {"p_positive", "p_negative", "p_neutral", "label", "confidence", "n_valid", "n_requested"} <= set(csv.columns)
    assert csv.set_index("item_id").loc["evil", "text"].startswith("'=")
    lines = [json.loads(x) for x in result.to_jsonl(tmp_path / "l.jsonl").read_text().splitlines()]
    assert len(lines[0]["soft_label"]) == 3 and sum(lines[0]["soft_label"]) == pytest.approx(1.0)
    parquet = pd.read_parquet(result.to_parquet(tmp_path / "l.parquet"))
    assert list(parquet["soft_label"].iloc[0]) == pytest.approx(lines[0]["soft_label"])
    dataset = result.to_hf_dataset()
    assert dataset.num_rows == 4 and len(dataset[0]["soft_label"]) == 3


def test_run_directory_files_and_no_secret_anywhere(fake_server, tmp_path, isolated_cache):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    out = tmp_path / "run"
    result = run(server, samples=2, out=out, id_column="id")
    assert {p.name for p in out.iterdir()} >= {"votes.jsonl", "labels.csv", "labels.jsonl", "run.json"}
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["votes"] == 24
    assert manifest["template_hash"] == result.task.template_hash
    vote = json.loads((out / "votes.jsonl").read_text().splitlines()[0])
    assert set(vote) >= {"item_id", "annotator", "sample_index", "label", "distribution", "raw", "error",
                         "prompt_hash", "template_hash", "tokens_in", "tokens_out", "cost_usd",
                         "latency_s", "cached"}
    assert server.headers_seen[0]["authorization"] == f"Bearer {CANARY}"  # the key was really used
    for path in [*out.rglob("*"), *isolated_cache.rglob("*")]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_bad_arguments_fail_before_any_call(fake_server):
    server = fake_server()
    with pytest.raises(ConfigError, match="samples=0"):
        run(server, samples=0)
    with pytest.raises(ConfigError, match="temperature -1"):
        run(server, temperature=-1.0)
    with pytest.raises(ConfigError, match="unknown model string 'nonsense-model-xyz'"):
        annotate(sentences(2), "sentiment", ["nonsense-model-xyz"], progress=False)
    with pytest.raises(DataError, match=r"row 2 \(item b\): field 'text' is empty"):
        run(server, rows=[{"id": "a", "text": "x"}, {"id": "b", "text": None}], id_column="id")
    assert server.calls == 0


def test_repeated_rows_are_asked_once_and_answered_alike(fake_server):
    server = fake_server(sampling_responder(["positive", "negative", "neutral"], "sentiment"))
    rows = [{"text": "the same line"}] * 5 + [{"text": "another line"}] * 3
    result = annotate(rows, "sentiment", ["openai/fake"], samples=3, api_base=server.url, progress=False)
    assert server.calls == 2  # one request (n=3) per distinct prompt
    votes = result.votes
    assert len(votes) == 24 and votes["item_id"].nunique() == 8
    for _, group in votes.groupby(votes["prompt_hash"]):
        by_sample = group.groupby("sample_index")["raw"].nunique()
        assert (by_sample == 1).all()  # every item of one prompt got the same k answers
    assert result.manifest["counts"]["new"] == 6 and result.manifest["counts"]["cache_hits"] == 18
    assert votes["cached"].sum() == 18
