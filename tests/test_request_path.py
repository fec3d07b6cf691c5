"""The request path kept light: credentials found once a run, and again the next; the
garbage collector tuned for the calls and given back."""

import gc
import json

from llm_annotator import annotate
from llm_annotator.engine import live

ROWS = [{"id": f"r{i}", "text": f"sentence number {i} here"} for i in range(4)]
OK = '{"sentiment": "positive"}'


def test_credentials_are_found_once_a_run_and_again_for_the_next(fake_server, monkeypatch):
    """The secret set is found once when a run's calls start (not at every answer), so a
    credential the environment holds only from the second run on is redacted there too."""
    secret = {"now": "sk-first-0123456789abcdef"}
    server = fake_server(lambda request: json.dumps({"sentiment": "positive", "note": f"key {secret['now']}"}))
    monkeypatch.setenv("SOME_SERVICE_TOKEN", secret["now"])
    first = annotate(ROWS[:2], "sentiment", ["openai/fake"], api_base=server.url, id_column="id", cache=False,
                     progress=False)
    secret["now"] = "sk-second-fedcba9876543210"
    monkeypatch.setenv("SOME_SERVICE_TOKEN", secret["now"])
    second = annotate(ROWS[2:], "sentiment", ["openai/fake"], api_base=server.url, id_column="id", cache=False,
                      progress=False)
    for result, key in ((first, "sk-first"), (second, "sk-second")):
        raws = result.votes["raw"].tolist()
        assert len(raws) == 2 and all("key ***" in raw and key not in raw for raw in raws), raws
        assert result.votes["label"].tolist() == ["positive", "positive"]


def test_the_collector_is_tuned_for_the_calls_and_given_back():
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert frozen == 0
    with live._quiet_collector():
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == max(thresholds[0], live.YOUNG_THRESHOLD)
        with live._quiet_collector():  # a second run meanwhile (another thread): left as it is
            assert gc.get_threshold()[0] == max(thresholds[0], live.YOUNG_THRESHOLD)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_a_process_that_manages_the_collector_itself_is_left_as_it_is():
    thresholds = gc.get_threshold()
    gc.disable()
    try:
        with live._quiet_collector():
            assert gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds
    finally:
        gc.enable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with live._quiet_collector():
            assert gc.get_threshold() == thresholds
        assert gc.get_freeze_count() == frozen  # its frozen objects stay frozen
    finally:
        gc.unfreeze()


def test_an_answer_after_the_calls_leaves_the_collector_as_it_was(fake_server):
    server = fake_server(lambda request: OK)
    thresholds = gc.get_threshold()
    result = annotate(ROWS, "sentiment", ["openai/fake"], api_base=server.url, id_column="id", cache=False,
                      progress=False)
    assert result.votes["label"].tolist() == ["positive"] * len(ROWS)
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
