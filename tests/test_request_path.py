"""The request path kept light: credentials found once a run, and again the next."""

import json

from llm_annotator import annotate

ROWS = [{"id": f"r{i}", "text": f"sentence number {i} here"} for i in range(4)]


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
