"""A damaged cache says so in one line with the fix, and `cache stats|clear` work on it; a
cache that cannot store an answer never loses it."""

import errno
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import RunDirError
from llm_annotator.store.cache import AnswerCache
from llm_annotator.testing import sampling_responder
from tests.conftest import sentences

LABELS = ["positive", "negative", "neutral"]
VALUE = {"content": "x", "tokens_in": 1, "tokens_out": 1, "cost_usd": 0.0, "latency_s": 0.0}


def filled(directory):
    cache = AnswerCache(directory)
    cache.set("v2:small", VALUE)
    cache.set("v2:big", {**VALUE, "content": "y" * 100_000})  # large values live in files of their own
    cache.close()
    return directory


def truncate(directory):
    db = directory / "cache.db"
    db.write_bytes(db.read_bytes()[:3000])


def garbage(directory):
    (directory / "cache.db").write_bytes(os.urandom(20_000))


def overwritten_header(directory):
    db = directory / "cache.db"
    db.write_bytes(b"\x00" * 100 + db.read_bytes()[100:])


DAMAGES = {"truncated cache.db": truncate, "garbage cache.db": garbage, "overwritten header": overwritten_header}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_cache_stops_a_run_before_any_call_with_the_fix(tmp_path, fake_server, damage):
    directory = filled(tmp_path / "cache")
    DAMAGES[damage](directory)
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    with pytest.raises(RunDirError) as info:
        annotate(sentences(3), "sentiment", "openai/fake", api_base=server.url, cache=directory,
                 out=tmp_path / "run", progress=False)
    text = str(info.value)
    assert f"the answer cache {directory} is damaged" in text and "\n" not in text
    assert f"fix: run 'llm-annotator cache clear --cache-dir {directory}'" in text
    assert server.calls == 0 and not (tmp_path / "run" / "labels.csv").exists()


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_stats_and_clear_work_on_a_damaged_cache(tmp_path, damage):
    directory = filled(tmp_path / "cache")
    (directory / "notes.txt").write_text("not the cache's")
    DAMAGES[damage](directory)
    cache = AnswerCache(directory)
    stats = cache.stats()
    assert stats["directory"] == str(directory) and stats["entries"] == 0 and stats["bytes"] > 0
    assert stats["damaged"]
    with pytest.raises(RunDirError, match="is damaged"):
        cache.check()
    cache.clear()
    assert cache.stats()["damaged"] is None and cache.stats()["entries"] == 0
    cache.set("v2:a", VALUE)
    assert cache.get("v2:a")["content"] == "x"
    cache.close()
    assert (directory / "notes.txt").read_text() == "not the cache's"  # clear removes the cache's files only
    assert not list(directory.rglob("*.val"))


def test_the_cache_commands_work_on_a_damaged_cache(tmp_path):
    directory = filled(tmp_path / "cache")
    garbage(directory)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    stats = subprocess.run([sys.executable, "-m", "llm_annotator", "cache", "stats", "--cache-dir", str(directory)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert stats.returncode == 0, stats.stderr
    clear = subprocess.run([sys.executable, "-m", "llm_annotator", "cache", "clear", "--cache-dir", str(directory)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert clear.returncode == 0 and str(directory) in clear.stdout, clear.stderr
    stats = AnswerCache(directory).stats()
    assert (stats["entries"], stats["damaged"]) == (0, None)


def test_a_missing_value_file_is_reported_and_asked_again(tmp_path):
    directory = filled(tmp_path / "cache")
    for path in directory.rglob("*.val"):
        path.unlink()
    cache = AnswerCache(directory)
    with pytest.warns(UserWarning, match=r"cache entry v2:big.* is corrupted \(its value file is missing\)"):
        found = cache.get_many(["v2:small", "v2:big"])
    assert list(found) == ["v2:small"] and cache.corrupted == 1


def test_a_cache_path_that_is_a_file_is_one_clear_error(tmp_path):
    path = tmp_path / "cache"
    path.write_text("x")
    with pytest.raises(RunDirError, match=rf"cannot use {path} as the answer cache: .*; fix: choose another"):
        AnswerCache(path)


# -- a cache that cannot store: the paid answer still reaches votes.jsonl ---------------------------
FULL = {"ENOSPC": OSError(errno.ENOSPC, "No space left on device"),
        "SQLite full": sqlite3.OperationalError("database or disk is full")}


@pytest.mark.parametrize("failure", list(FULL), ids=list(FULL))
def test_a_full_cache_loses_no_paid_answer(tmp_path, fake_server, monkeypatch, failure):
    import diskcache

    server = fake_server(sampling_responder(LABELS, "sentiment"))

    def full(self, *args, **kwargs):
        raise FULL[failure]

    monkeypatch.setattr(diskcache.Cache, "set", full)
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"the answer cache .* cannot store answers"):
        result = annotate(sentences(6), "sentiment", [{"model": "openai/fake", "concurrency": 2}],
                          api_base=server.url, out=out, progress=False)
    assert result.votes["label"].notna().all() and server.calls == 6
    votes = [json.loads(line) for line in (out / "votes.jsonl").read_text().splitlines()]
    assert len(votes) == 6 and all(v["label"] in LABELS for v in votes)
    monkeypatch.undo()
    again = annotate(sentences(6), "sentiment", [{"model": "openai/fake", "concurrency": 2}], api_base=server.url,
                     out=out, progress=False)
    assert server.calls == 6 and again.votes["label"].tolist() == result.votes["label"].tolist()  # resumed


@pytest.mark.parametrize("failure", list(FULL), ids=list(FULL))
def test_a_put_that_fails_is_one_clear_error_and_the_answers_stay_findable(tmp_path, monkeypatch, failure):
    """The pipeline goes on after this error (its votes reach votes.jsonl); batch collection
    stops before it marks a batch collected. Either way this process still finds the answers."""
    import diskcache

    cache = AnswerCache(tmp_path / "cache")

    def full(self, *args, **kwargs):
        raise FULL[failure]

    monkeypatch.setattr(diskcache.Cache, "set", full)
    with pytest.raises(RunDirError) as info:
        cache.set_many([("v2:a", VALUE), ("v2:b", {**VALUE, "content": "b"})])
    text = str(info.value)
    reason = {"ENOSPC": "No space left on device", "SQLite full": "database or disk is full"}[failure]
    assert f"cannot store 2 answers in the answer cache {tmp_path / 'cache'} ({reason})" in text
    assert "fix: free disk space" in text and "\n" not in text
    assert cache.unstored == 2
    assert cache.get("v2:a")["content"] == "x" and set(cache.get_many(["v2:a", "v2:b", "v2:c"])) == {"v2:a", "v2:b"}


def test_an_answer_utf8_cannot_hold_is_cached(tmp_path):
    cache = AnswerCache(tmp_path / "cache")
    cache.set_many([("v2:a", {**VALUE, "content": "half \ud83d"})])
    cache.close()
    assert AnswerCache(tmp_path / "cache").get("v2:a")["content"] == "half \ud83d"
