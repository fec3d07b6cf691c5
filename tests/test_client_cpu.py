"""The request path's CPU cuts (docs/cpu.md) and what they must leave as it was.

LiteLLM's request building (its sync ``completion``, which ``acompletion`` hands to the
event loop's executor) runs on the loop's thread for OpenAI-compatible calls; everything
else the loop's executor is given still runs on a pool thread, and a call gives the same
request, choices, log-probabilities, tokens, cost and errors either way."""

import asyncio
import concurrent.futures
import threading

import pytest

from llm_annotator import annotate
from llm_annotator.core.models import ModelSpec
from llm_annotator.providers import client, llm, pricing
from llm_annotator.testing.responders import Reply

MESSAGES = [{"role": "user", "content": "Is this good? yes it is"}]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
    "required": ["sentiment"], "additionalProperties": False}}}
TOP = {"positive": 0.7, "negative": 0.3}


def litellm_main():
    """``litellm.main``, imported and configured as a run does it."""
    client.litellm()
    import litellm.main

    return litellm.main


def reply(request):
    return Reply(content='{"sentiment": "positive"}', top_logprobs=TOP)


@pytest.fixture
def building_threads(monkeypatch):
    """The thread each LiteLLM request building ran on (``litellm.main.completion`` wrapped)."""
    seen: list[str] = []
    main = litellm_main()
    real = main.completion

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    spy.__module__, spy.__name__ = real.__module__, real.__name__
    monkeypatch.setattr(main, "completion", spy)
    return seen


def call(spec, **options):
    async def go():
        return await llm.complete(spec, MESSAGES, n=options.get("n", 1), max_tokens=20, response_format=SCHEMA,
                                  logprobs=5, secrets=[])

    return asyncio.run(go())


def test_openai_request_building_runs_on_the_loops_thread(fake_server, building_threads):
    server = fake_server(reply)
    completion = call(ModelSpec(model="openai/fake", api_base=server.url, max_retries=0))
    assert building_threads == [threading.main_thread().name]
    assert completion.choices[0].content == '{"sentiment": "positive"}'


def test_without_the_cut_the_building_runs_on_a_pool_thread(fake_server, building_threads, monkeypatch):
    monkeypatch.setattr(client, "INLINE_PROVIDERS", frozenset())
    server = fake_server(reply)
    call(ModelSpec(model="openai/fake", api_base=server.url, max_retries=0))
    assert len(building_threads) == 1 and building_threads[0] != threading.main_thread().name


def test_a_call_gives_the_same_request_choices_logprobs_tokens_and_cost_either_way(fake_server, monkeypatch):
    results, requests = [], []
    for providers in (client.INLINE_PROVIDERS, frozenset()):
        monkeypatch.setattr(client, "INLINE_PROVIDERS", providers)
        server = fake_server(reply)
        spec = ModelSpec(model="openai/gpt-4o-mini", api_base=server.url, api_key="sk-test", max_retries=0)
        results.append(call(spec, n=3))
        requests.append(server.requests)
    inline, hop = results
    assert requests[0] == requests[1] and requests[0][0]["n"] == 3 and requests[0][0]["logprobs"] is True
    assert [c.content for c in inline.choices] == [c.content for c in hop.choices] and len(inline.choices) == 3
    assert inline.choices[0].logprobs == hop.choices[0].logprobs and inline.choices[0].logprobs
    tokens = {t["token"]: t["top_logprobs"] for t in inline.choices[0].logprobs}
    assert any(alt["token"] == "negative" for alts in tokens.values() for alt in alts)
    assert (inline.tokens_in, inline.tokens_out) == (hop.tokens_in, hop.tokens_out) and inline.tokens_out > 0
    assert not inline.estimated and not hop.estimated
    assert inline.cost_usd == hop.cost_usd == pytest.approx(
        pricing.price("openai/gpt-4o-mini", inline.tokens_in, inline.tokens_out))
    assert inline.cost_usd > 0


def test_a_callers_price_is_kept(fake_server):
    server = fake_server(reply)
    completion = call(ModelSpec(model="openai/fake", api_base=server.url, max_retries=0, price=(1.0, 2.0)))
    assert completion.cost_usd == pytest.approx((completion.tokens_in * 1.0 + completion.tokens_out * 2.0) / 1e6)
    assert completion.cost_usd > 0


def test_errors_and_retries_are_as_before(fake_server, monkeypatch):
    kinds = []
    for providers in (client.INLINE_PROVIDERS, frozenset()):
        monkeypatch.setattr(client, "INLINE_PROVIDERS", providers)
        answers = iter([Reply(status=500), Reply(content='{"sentiment": "negative"}')])
        server = fake_server(lambda request, answers=answers: next(answers))
        monkeypatch.setattr(llm, "_backoff", lambda attempt, after: asyncio.sleep(0))
        completion = call(ModelSpec(model="openai/fake", api_base=server.url, max_retries=1))
        assert completion.choices[0].content == '{"sentiment": "negative"}' and server.calls == 2
        refused = fake_server(lambda request: Reply(status=401))
        with pytest.raises(llm.CallFailed) as failed:
            call(ModelSpec(model="openai/fake", api_base=refused.url, max_retries=3))
        assert refused.calls == 1
        kinds.append(failed.value.kind)
    assert kinds[0] == kinds[1] and kinds[0].fatal


def test_a_building_that_raises_fails_the_call_as_before(fake_server, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("cannot build this request")

    broken.__module__, broken.__name__ = "litellm.main", "completion"
    monkeypatch.setattr(litellm_main(), "completion", broken)
    server = fake_server(reply)
    with pytest.raises(llm.CallFailed) as failed:
        call(ModelSpec(model="openai/fake", api_base=server.url, max_retries=0))
    assert "cannot build this request" in failed.value.detail
    assert server.calls == 0


def test_other_work_given_to_the_loops_executor_still_runs_on_a_pool_thread():
    async def go():
        loop = asyncio.get_running_loop()
        with client.setup_inline("openai"):
            assert isinstance(loop._default_executor, client._LoopExecutor)
            return await loop.run_in_executor(None, lambda: threading.current_thread().name)

    assert asyncio.run(go()) != threading.main_thread().name


def test_a_loop_with_an_executor_of_its_own_keeps_it(fake_server, building_threads):
    server = fake_server(reply)
    own = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="callers")

    async def go():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(own)
        completion = await llm.complete(ModelSpec(model="openai/fake", api_base=server.url, max_retries=0),
                                        MESSAGES, n=1, max_tokens=20, response_format=None, logprobs=None,
                                        secrets=[])
        return completion, loop._default_executor

    completion, executor = asyncio.run(go())
    assert executor is own and completion.choices
    assert len(building_threads) == 1 and building_threads[0].startswith("callers")


def test_other_providers_keep_litellms_thread_hop():
    async def go():
        with client.setup_inline("azure"):
            return client._INLINE.get(), asyncio.get_running_loop()._default_executor

    inline, executor = asyncio.run(go())
    assert inline is False and executor is None


def test_annotate_through_the_cut_gives_votes_tokens_cost_and_distributions(fake_server, building_threads):
    server = fake_server(lambda request: Reply(content='{"sentiment": "positive"}',
                                               top_logprobs={"positive": 0.7, "negative": 0.2, "neutral": 0.1}))
    rows = [{"id": f"r{i}", "text": f"sentence {i}"} for i in range(3)]
    result = annotate(rows, "sentiment", ["openai/gpt-4o-mini"], api_base=server.url, api_key="sk-test",
                      id_column="id", cache=False, progress=False, samples=2)
    votes = result.votes
    assert len(votes) == 6 and set(votes["label"]) == {"positive"}
    assert (votes["tokens_in"].sum(), votes["tokens_out"].sum()) != (0, 0)
    assert result.manifest["cost_usd"] == pytest.approx(votes["cost_usd"].sum()) and result.manifest["cost_usd"] > 0
    assert votes["distribution"].iloc[0] == pytest.approx({"positive": 0.7, "negative": 0.2, "neutral": 0.1})
    assert building_threads and set(building_threads) == {threading.main_thread().name}
