"""A hostile OpenAI-compatible server: every answer a provider or a proxy in front of it can
give, scripted per test. A run against it goes to the end, records what happened as it
happened (a vote with a label, or with none and the kind of error), and retries only what a
retry can mend."""

import email.utils
import json
import time

import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ErrorKind
from llm_annotator.providers import pricing
from llm_annotator.testing import DROP, Reply, attempts, user_text
from tests.conftest import sentences

pytestmark = [pytest.mark.filterwarnings("ignore:run (failed|partial)"),  # what these runs are meant to be
              pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")]  # LiteLLM on hostile usage

OK = '{"sentiment": "positive"}'
LABELS = {"positive": '{"sentiment": "positive"}', "negative": '{"sentiment": "negative"}',
          "neutral": '{"sentiment": "neutral"}'}


def run(server, items=2, samples=1, **spec):
    """annotate() against ``server``: two retries, so a test of what is retried stays short."""
    model = {"model": "openai/fake", "max_retries": 2, **spec}
    return annotate(sentences(items), "sentiment", [model], api_base=server.url, samples=samples,
                    id_column="id", progress=False)


def number(request):
    """The item number of a request to ``sentences(n)``'s rows ("sentence number 3 about ...")."""
    return int(user_text(request).split("number ")[1].split()[0])


def kinds(result):
    return [ErrorKind.of(e) for e in result.votes["error"]]


def asked_once_each(server):
    prompts = [user_text(r) for r in server.requests]
    return len(prompts) == len(set(prompts))


def completion(choices, **fields):
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "fake", "choices": choices,
            "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}, **fields}
    return Reply(body=json.dumps(body).encode())


def choice(content, **fields):
    return {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}, **fields}


# -- Retry-After ---------------------------------------------------------------------------

def _http_date(offset_s):
    return email.utils.formatdate(time.time() + offset_s, usegmt=True)


RETRY_AFTER = {  # headers of a 429, the least seconds the retry waits
    "seconds": ({"Retry-After": "1"}, 1.0),
    "float seconds": ({"Retry-After": "0.4"}, 0.4),
    "HTTP date in the past": (lambda: {"Retry-After": _http_date(-3600)}, 0.0),
    "HTTP date in the future": (lambda: {"Retry-After": _http_date(2)}, 0.9),  # dates have whole seconds
    "garbage": ({"Retry-After": "soon-ish, maybe"}, 0.0),
    "empty": ({"Retry-After": ""}, 0.0),
    "negative": ({"Retry-After": "-30"}, 0.0),
    "not a number": ({"Retry-After": "nan"}, 0.0),
    "retry-after-ms": ({"retry-after-ms": "400"}, 0.4),
    "retry-after-ms negative": ({"retry-after-ms": "-400"}, 0.0),
    "retry-after-ms garbage": ({"retry-after-ms": "x", "Retry-After": "0.3"}, 0.3),
}


@pytest.mark.parametrize("case", sorted(RETRY_AFTER))
def test_every_form_of_retry_after_is_read_or_ignored_and_the_retry_answers(fake_server, case):
    headers, least = RETRY_AFTER[case]
    failed = set()

    def respond(request):  # the first request of each prompt is refused
        text = user_text(request)
        if text in failed:
            return OK
        failed.add(text)
        return Reply(status=429, headers=headers() if callable(headers) else headers)

    server = fake_server(respond)
    started = time.monotonic()
    result = run(server)
    assert result.votes["label"].eq("positive").all() and server.calls == 4
    assert time.monotonic() - started >= least


@pytest.mark.parametrize("value", ["1e12", "inf", "86400", "HTTP date next year"])
def test_a_retry_after_longer_than_the_longest_wait_ends_the_request_at_once(fake_server, value):
    header = _http_date(365 * 86400) if value == "HTTP date next year" else value
    server = fake_server(attempts(Reply(status=429, headers={"Retry-After": header}), then=OK))
    started = time.monotonic()
    result = run(server)
    assert time.monotonic() - started < 30 and server.calls == 2  # not waited for, not retried
    assert kinds(result) == [ErrorKind.RATE_LIMITED] * 2
    assert "not retried: the provider asks to wait" in result.votes["error"].iloc[0]


# -- usage ----------------------------------------------------------------------------------

USAGE = {
    "missing": DROP,
    "null": None,
    "partial": {"prompt_tokens": 9},
    "negative": {"prompt_tokens": -9, "completion_tokens": -6},
    "huge": {"prompt_tokens": 10**30, "completion_tokens": 10**30},
    "zero completion tokens for an answer": {"prompt_tokens": 9, "completion_tokens": 0},
}


@pytest.mark.parametrize("case", sorted(USAGE))
def test_usage_that_is_missing_or_cannot_be_true_is_counted_here(fake_server, case):
    server = fake_server(lambda request: Reply(content=OK, fields={"usage": USAGE[case]}))
    result = run(server)
    assert result.votes["label"].eq("positive").all() and server.calls == 2
    assert result.votes["tokens_in"].between(1, 10_000).all() and result.votes["tokens_out"].between(1, 100).all()


@pytest.mark.parametrize("usage", [{"prompt_tokens": "nine", "completion_tokens": "6"}, [9, 6],
                                   {"prompt_tokens": 9.5, "completion_tokens": 6}])
def test_usage_that_litellm_cannot_read_is_a_failed_request_not_a_crash(fake_server, usage):
    server = fake_server(lambda request: Reply(content=OK, fields={"usage": usage}))
    result = run(server)
    assert kinds(result) == [ErrorKind.API_ERROR] * 2
    assert result.votes["error"].str.contains("the provider's answer could not be read").all()
    assert server.calls == 6  # asked again: the answer came, its envelope was broken


def test_reported_usage_is_read_only_when_it_can_be_true():
    assert pricing.usage_tokens({"prompt_tokens": 9, "completion_tokens": 6}) == (9, 6)
    assert pricing.usage_tokens({"prompt_tokens": 9.0, "completion_tokens": 6.0}) == (9, 6)
    for bad in [None, {}, {"prompt_tokens": 9}, {"prompt_tokens": "9", "completion_tokens": "6"},
                {"prompt_tokens": True, "completion_tokens": 6}, {"prompt_tokens": 0, "completion_tokens": 6},
                {"prompt_tokens": 9, "completion_tokens": -1}, {"prompt_tokens": 10**9, "completion_tokens": 6},
                {"prompt_tokens": 9.5, "completion_tokens": 6}]:
        assert pricing.usage_tokens(bad) is None, bad


# -- choices ----------------------------------------------------------------------------------

def test_choices_without_index_or_with_duplicated_or_shuffled_indexes_are_all_votes(fake_server):
    three = [LABELS["positive"], LABELS["negative"], LABELS["neutral"]]
    forms = {
        "s0": [{k: v for k, v in choice(c).items() if k != "index"} for c in three],
        "s1": [choice(c, index=0) for c in three],
        "s2": [choice(c, index=i) for c, i in zip(three, [2, 0, 1], strict=True)],
    }
    server = fake_server(lambda request: completion(forms[f"s{number(request)}"]))
    result = run(server, items=3, samples=3)
    assert server.calls == 3
    for _, votes in result.votes.groupby("item_id"):
        assert sorted(votes["label"]) == ["negative", "neutral", "positive"]
        assert sorted(votes["sample_index"]) == [0, 1, 2]


def test_more_choices_than_asked_keep_the_asked_number_and_fewer_are_asked_again(fake_server):
    server = fake_server(lambda request: completion([choice(OK, index=i) for i in range(5)]))
    more = run(server, items=2, samples=3)
    assert server.calls == 2 and len(more.votes) == 6 and more.votes["label"].eq("positive").all()

    fewer_server = fake_server(lambda request: completion([choice(OK)]))
    fewer = run(fewer_server, items=2, samples=3)
    assert len(fewer.votes) == 6 and fewer.votes["label"].eq("positive").all()
    assert fewer_server.calls == 6  # one request with n=3, then the two missing ones one by one


def test_a_null_content_is_an_empty_answer_not_retried(fake_server):
    server = fake_server(lambda request: completion([choice(None)]))
    result = run(server)
    assert kinds(result) == [ErrorKind.EMPTY] * 2 and result.votes["label"].isna().all()
    assert server.calls == 2


def test_a_null_message_is_an_answer_that_could_not_be_read(fake_server):
    server = fake_server(lambda request: completion([{"index": 0, "finish_reason": "stop", "message": None}]))
    result = run(server)
    assert kinds(result) == [ErrorKind.API_ERROR] * 2 and server.calls == 6
    assert result.votes["error"].str.contains("could not be read").all()


@pytest.mark.parametrize("choices", [[], None, DROP])
def test_no_choices_is_an_empty_response_after_the_retries(fake_server, choices):
    server = fake_server(lambda request: Reply(content=OK, fields={"choices": choices}))
    result = run(server)
    assert kinds(result) == [ErrorKind.EMPTY_RESPONSE] * 2 and server.calls == 6


def test_malformed_log_probabilities_and_finish_reasons_leave_the_answer(fake_server):
    bad = {"content": [{"token": None, "logprob": "x", "top_logprobs": None}]}
    server = fake_server(lambda request: completion([choice(OK, logprobs=bad, finish_reason=7)]))
    result = run(server, logprobs=True)
    assert result.votes["label"].eq("positive").all() and server.calls == 2


# -- error objects --------------------------------------------------------------------------

ERROR_OBJECTS = {  # an error object sent with HTTP 200: code, message -> kind, retried
    "model_not_found": ("model_not_found", "The model `fake` does not exist", ErrorKind.NOT_FOUND, False),
    "model message only": (None, "The model `fake` does not exist or you do not have access to it",
                           ErrorKind.NOT_FOUND, False),
    "invalid_value": ("invalid_value", "Invalid value for 'temperature'", ErrorKind.BAD_REQUEST, False),
    "context_length_exceeded": ("context_length_exceeded", "This model's maximum context length is 8192 tokens",
                                ErrorKind.CONTEXT_TOO_LONG, False),
    "insufficient_quota": ("insufficient_quota", "You exceeded your current quota", ErrorKind.RATE_LIMITED, False),
    "rate_limit_exceeded": ("rate_limit_exceeded", "Rate limit reached for requests", ErrorKind.RATE_LIMITED, True),
    "server_error": (None, "The server had an error while processing your request", ErrorKind.SERVER_ERROR, True),
    "unknown": (None, "something odd happened", ErrorKind.API_ERROR, True),
}


@pytest.mark.parametrize("case", sorted(ERROR_OBJECTS))
def test_an_error_object_in_a_200_is_classified_by_what_it_says(fake_server, case):
    code, message, kind, retried = ERROR_OBJECTS[case]
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    server = fake_server(lambda request: Reply(body=json.dumps({"error": error}).encode()))
    result = run(server, concurrency=1)
    assert set(kinds(result)) == {kind}
    assert message in result.votes["error"].iloc[0]
    if retried:
        assert server.calls == 2 * 3
    else:
        assert asked_once_each(server)


@pytest.mark.parametrize("code", ["invalid_api_key", None])
def test_an_error_object_saying_the_key_is_wrong_stops_the_run_like_a_401(fake_server, code):
    error = {"message": "Incorrect API key provided: sk-abc***xyz", "type": "invalid_request_error", "code": code}
    server = fake_server(lambda request: Reply(body=json.dumps({"error": error}).encode()))
    result = run(server, concurrency=1)
    assert server.calls == 1
    assert result.manifest["status"] == "failed"
    assert "refused the credentials: Incorrect API key provided" in result.manifest["stopped_by"]["openai/fake"]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_not_retried(fake_server, status):
    server = fake_server(lambda request: Reply(status=status))
    result = run(server, concurrency=1)
    assert server.calls == 1
    assert result.manifest["status"] == "failed" and result.manifest["failures"][0]["kind"] == "auth"
    assert f"refused the credentials: scripted status {status}" in result.manifest["stopped_by"]["openai/fake"]


@pytest.mark.parametrize("status, kind", [(400, ErrorKind.BAD_REQUEST), (404, ErrorKind.NOT_FOUND),
                                          (422, ErrorKind.BAD_REQUEST), (413, ErrorKind.CONTEXT_TOO_LONG)])
def test_errors_no_retry_mends_are_asked_once(fake_server, status, kind):
    server = fake_server(lambda request: Reply(status=status))
    result = run(server, concurrency=1)
    assert set(kinds(result)) == {kind}
    if status == 422:  # LiteLLM itself asks once more without the parameters it may drop
        assert server.calls == 2 and "HTTP 422" in result.votes["error"].iloc[0]
    else:
        assert asked_once_each(server)


@pytest.mark.parametrize("status, kind", [(429, ErrorKind.RATE_LIMITED), (500, ErrorKind.SERVER_ERROR),
                                          (503, ErrorKind.SERVER_ERROR), (408, ErrorKind.TIMEOUT)])
def test_errors_a_retry_may_mend_are_retried(fake_server, status, kind):
    server = fake_server(lambda request: Reply(status=status))
    result = run(server)
    assert set(kinds(result)) == {kind} and server.calls == 2 * 3


# -- bodies that are not a completion --------------------------------------------------------

BODIES = {
    "truncated JSON": (200, b'{"id": "x", "choices": [{"index": 0, "message": {"content": "{\\"senti'),
    "not JSON": (200, b"hello, I am a teapot"),
    "empty": (200, b""),
    "JSON null": (200, b"null"),
    "JSON list": (200, b"[1, 2, 3]"),
    "an HTML login page": (200, b"<html><body><form>Sign in</form></body></html>"),
    "an HTML 502 page": (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "an HTML 503 page": (503, b"<html><body>Service Unavailable</body></html>"),
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_a_body_that_is_not_a_completion_is_a_failed_request_that_is_retried(fake_server, case):
    status, body = BODIES[case]
    content_type = "text/html" if body.startswith(b"<html") else "application/json"
    server = fake_server(attempts(Reply(status=status, body=body, headers={"Content-Type": content_type}),
                                  then=OK))
    result = run(server)
    assert result.votes["label"].eq("positive").all() and server.calls == 4

    broken = fake_server(lambda request: Reply(status=status, body=body, headers={"Content-Type": content_type}))
    result = run(broken, items=1)
    assert kinds(result)[0] in {ErrorKind.API_ERROR, ErrorKind.SERVER_ERROR, ErrorKind.EMPTY_RESPONSE}
    assert broken.calls == 3 and "Traceback" not in result.votes["error"].iloc[0]


# -- answers of any size and text ------------------------------------------------------------

def test_an_answer_of_a_megabyte_is_a_vote_kept_whole(fake_server):
    padded = '{"sentiment": "negative", "why": "' + "x" * 1_000_000 + '"}'
    server = fake_server(lambda request: padded)
    result = run(server)
    assert result.votes["label"].eq("negative").all()
    assert result.votes["raw"].str.len().eq(len(padded)).all()


def test_an_answer_with_a_lone_surrogate_or_a_nul_is_stored(fake_server, tmp_path):
    lone = {"choices": [choice("SURROGATE")], "usage": {"prompt_tokens": 9, "completion_tokens": 6}}
    raw = json.dumps(lone).replace("SURROGATE", '{\\"sentiment\\": \\"positive\\"} \\ud800').encode()
    server = fake_server(lambda request: Reply(body=raw) if number(request) == 0 else Reply(content=OK + "\x00"))
    result = annotate(sentences(2), "sentiment", ["openai/fake"], api_base=server.url, id_column="id",
                      progress=False, out=tmp_path / "run")
    assert result.votes["label"].eq("positive").all()
    raws = result.votes.set_index("item_id")["raw"]
    assert raws["s0"].endswith("\ufffd") and raws["s1"].endswith("\x00")
    assert (tmp_path / "run" / "labels.csv").exists()


# -- everything at once ---------------------------------------------------------------------

#: One fault per item (by its number), each one a retry mends or an answer to keep as it is.
CHAOS = [
    Reply(status=429, headers={"Retry-After": "garbage"}),
    Reply(status=429, headers={"Retry-After": _http_date(-60)}),
    Reply(status=429, headers={"retry-after-ms": "-5"}),
    Reply(status=503, body=b"<html>down</html>", headers={"Content-Type": "text/html"}),
    Reply(body=b'{"choices": [{"message": {"content": "{\\"sent'),
    Reply(body=b"<html>login</html>", headers={"Content-Type": "text/html"}),
    Reply(body=json.dumps({"error": {"message": "The server had an error", "code": None}}).encode()),
    Reply(content=OK, fields={"usage": {"prompt_tokens": 10**40, "completion_tokens": -1}}),
    Reply(content=OK, fields={"usage": DROP}),
    Reply(content=OK, fields={"choices": [{"finish_reason": "stop", "message": {"content": OK}}]}),
    Reply(content='{"sentiment": "positive", "pad": "' + "y" * 200_000 + '"}'),
    Reply(drop=True),
    Reply(status=500),
]


def test_a_run_through_every_fault_at_once_goes_to_the_end(fake_server, tmp_path):
    asked: dict[int, int] = {}

    def respond(request):
        item = number(request)
        asked[item] = asked.get(item, 0) + 1
        return CHAOS[item % len(CHAOS)] if asked[item] == 1 else OK

    server = fake_server(respond)
    out = tmp_path / "run"
    result = annotate(sentences(2 * len(CHAOS)), "sentiment", [{"model": "openai/fake", "max_retries": 3}],
                      api_base=server.url, id_column="id", progress=False, out=out)
    assert result.votes["label"].eq("positive").all() and len(result.votes) == 2 * len(CHAOS)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert (out / "labels.csv").exists()
