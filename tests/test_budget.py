"""A budget covers the job: every run into a directory, every billed attempt, every model.

``openai/gpt-4o`` at a loopback ``api_base`` is priced by LiteLLM's price map; the fake
server reports usage as word counts.
"""

import json

import pytest

from llm_annotator import ConfigError, annotate
from llm_annotator.testing import Reply
from tests.conftest import sentences

KEY = "sk-test"
NEUTRAL = '{"sentiment": "neutral"}'
GPT4O = "openai/gpt-4o"


def run(rows, server, models=(GPT4O,), **options):
    return annotate(rows, "sentiment", list(models), api_base=server.url, api_key=KEY, id_column="id",
                    progress=False, **options)


def vote_lines(out):
    return [json.loads(line) for line in (out / "votes.jsonl").read_text().splitlines()]


def probe(fake_server, tmp_path):
    """(billed dollars of one item, worst-case dollars of one request) for these items and gpt-4o."""
    import litellm

    server = fake_server(lambda request: NEUTRAL)
    run(sentences(1), server, out=tmp_path / "probe", cache=False)
    (vote,) = vote_lines(tmp_path / "probe")
    request = server.requests[0]
    tokens_in = litellm.token_counter(model="gpt-4o", messages=request["messages"])
    cost_in, cost_out = litellm.cost_per_token(model="gpt-4o", prompt_tokens=tokens_in,
                                               completion_tokens=int(request["max_tokens"]))
    assert vote["cost_usd"] > 0
    return float(vote["cost_usd"]), float(cost_in + cost_out)


def completion_body(content, usage):
    """A chat completion as raw JSON; ``usage=None`` leaves the key out."""
    body = {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]}
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body).encode()


def test_a_budget_covers_the_job_across_re_runs(fake_server, tmp_path):
    one, _ = probe(fake_server, tmp_path)
    server = fake_server(lambda request: NEUTRAL)
    budget = 40 * one  # 300 items cost about 300 * one: no run can finish
    out = tmp_path / "run"
    calls = []
    for _ in range(3):
        before = server.calls
        result = run(sentences(300), server, out=out, budget_usd=budget)
        calls.append(server.calls - before)
        assert result.manifest["status"] == "stopped_by_budget"
    assert calls[0] > 0 and calls[2] == 0, f"calls per run: {calls}"
    billed = sum(vote["cost_usd"] for vote in vote_lines(out))
    assert billed <= budget + 1e-12, f"votes cost ${billed:.5f} under a budget of ${budget:.5f}"
    spent = result.manifest["budget"]["spent_usd"]
    assert 0.8 * budget <= spent <= budget


def test_missing_usage_is_estimated_and_billed(fake_server, tmp_path):
    one, _ = probe(fake_server, tmp_path)
    server = fake_server(lambda request: Reply(body=completion_body(NEUTRAL, usage=None)))
    budget = 10 * one
    result = run(sentences(60), server, budget_usd=budget)
    votes = result.votes
    assert len(votes) > 0 and votes["label"].eq("neutral").all()
    assert (votes["cost_usd"] > 0).all(), "an answer without usage was billed $0"
    assert result.manifest["status"] == "stopped_by_budget"
    assert server.calls < 60


def test_negative_usage_is_never_a_refund(fake_server, tmp_path):
    one, _ = probe(fake_server, tmp_path)
    usage = {"prompt_tokens": -1000, "completion_tokens": -5, "total_tokens": -1005}
    server = fake_server(lambda request: Reply(body=completion_body(NEUTRAL, usage=usage)))
    budget = 10 * one
    result = run(sentences(60), server, budget_usd=budget)
    costs = result.votes["cost_usd"]
    assert len(costs) > 0
    assert (costs >= 0).all() and (costs > 0).all(), sorted(costs)[:3]
    assert float(costs.sum()) <= budget + 1e-12
    assert 0 < result.manifest["cost_usd"] <= budget
    assert result.manifest["status"] == "stopped_by_budget"
    assert server.calls < 60


def test_timed_out_attempts_count_against_the_budget(fake_server, tmp_path):
    _, worst = probe(fake_server, tmp_path)
    server = fake_server(lambda request: Reply(content=NEUTRAL, delay=3))
    model = {"model": GPT4O, "timeout": 0.5, "max_retries": 0, "concurrency": 2}
    result = run(sentences(40), server, models=[model], budget_usd=5 * worst, cache=False)
    assert result.votes["error"].str.startswith("timeout").all()
    assert result.manifest["budget"]["spent_usd"] > 0, "timed-out attempts, maybe billed, were counted as $0"
    assert result.manifest["status"] == "stopped_by_budget"
    assert server.calls <= 12, f"{server.calls} attempts under a budget of about five"


def test_an_unpriced_model_with_a_budget_is_refused_before_any_call(fake_server):
    server = fake_server(lambda request: NEUTRAL)
    with pytest.raises(ConfigError, match="price"):
        run(sentences(5), server, models=["openai/fake"], budget_usd=1.0)
    assert server.calls == 0


def test_a_callers_price_prices_an_unknown_model(fake_server):
    server = fake_server(lambda request: NEUTRAL)
    result = run(sentences(5), server, models=[{"model": "openai/fake", "price": [2.5, 10.0]}], budget_usd=1.0)
    votes = result.votes
    assert server.calls == 5 and votes["label"].eq("neutral").all()
    expected = votes["tokens_in"] * 2.5e-6 + votes["tokens_out"] * 10e-6
    assert (votes["cost_usd"] > 0).all()
    assert votes["cost_usd"].tolist() == pytest.approx(expected.tolist())
    assert result.manifest["cost_usd"] == pytest.approx(float(expected.sum()))


def test_a_budget_is_spent_nearly_whole_at_concurrency_64(fake_server):
    server = fake_server(lambda request: NEUTRAL, latency=0.05)
    result = run(sentences(600), server, models=[{"model": GPT4O, "concurrency": 64}], budget_usd=0.01)
    spent = result.manifest["cost_usd"]
    assert result.manifest["status"] == "stopped_by_budget"
    assert spent <= 0.01
    assert spent >= 0.9 * 0.01, f"stopped at ${spent:.5f} of $0.01"
    assert float(result.votes["cost_usd"].sum()) <= 0.01 + 1e-12
