"""The request path kept light: LiteLLM imported in the background once a call is known to
be needed (and never for a replay), its failure told in one line, credentials found once a
run and again the next, the garbage collector tuned for a run and given back."""

import ast
import gc
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ModelError
from llm_annotator.providers import client

ROWS = [{"id": f"r{i}", "text": f"sentence number {i} here"} for i in range(4)]
OK = '{"sentiment": "positive"}'

#: Runs the CLI, then tells which thread imported LiteLLM and whether it was imported at all.
SPY = """
import sys, threading
from llm_annotator.providers import client
importer = []
_import = client._import
def spied():
    importer.append(threading.current_thread().name)
    _import()
client._import = spied
from llm_annotator.cli import main
code = main(sys.argv[1:])
print({"imported": "litellm" in sys.modules, "by": importer})
sys.exit(code)
"""


def cli(*args, prelude=""):
    """The CLI in a fresh interpreter (LiteLLM not yet imported), with ``SPY`` around it."""
    return subprocess.run([sys.executable, "-c", prelude + SPY, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}, timeout=300)


def said(proc):
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])  # the dict SPY prints


@pytest.fixture
def job(tmp_path, fake_server):
    """The CLI arguments of a small job against a loopback server, and its input file."""
    server = fake_server(lambda request: OK)
    data = tmp_path / "items.csv"
    pd.DataFrame(ROWS).to_csv(data, index=False)
    args = ["annotate", data, "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url, "--id-column", "id",
            "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache", "--overwrite", "-q"]
    return server, data, args


@pytest.mark.slow
def test_a_call_imports_litellm_in_the_background_and_a_replay_not_at_all(job):
    server, data, args = job
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert said(first) == {"imported": True, "by": ["llm-annotator: import litellm"]}  # joined, not imported again
    assert server.calls == len(ROWS)

    replay = cli(*args)
    assert replay.returncode == 0, replay.stderr
    assert said(replay) == {"imported": False, "by": []} and server.calls == len(ROWS)

    pd.DataFrame([*ROWS[:3], {"id": "r3", "text": "a changed row"}]).to_csv(data, index=False)
    changed = cli(*args)
    assert changed.returncode == 0, changed.stderr
    assert said(changed) == {"imported": True, "by": ["llm-annotator: import litellm"]}
    assert server.calls == len(ROWS) + 1  # the changed row only
    labels = pd.read_csv(args[args.index("--out") + 1] / "labels.csv")
    assert labels["label"].tolist() == ["positive"] * len(ROWS)


@pytest.mark.slow
def test_a_litellm_that_cannot_be_imported_is_a_one_line_error(job):
    server, _, args = job
    proc = cli(*args, prelude="import sys\nsys.modules['litellm'] = None\n")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("llm-annotator: error: LiteLLM cannot be imported: ModuleNotFoundError: import of "
                               "litellm halted")
    assert "fix: reinstall it: pip install 'litellm" in lines[0]
    assert server.calls == 0 and not (args[args.index("--out") + 1] / "labels.csv").exists()


def test_the_import_error_is_kept_and_told_at_every_use(monkeypatch):
    monkeypatch.setattr(client, "_LOADED", {})
    monkeypatch.setitem(sys.modules, "litellm", None)
    client.start_import()
    for _ in range(2):  # the background import's failure, told where LiteLLM is needed; not tried again
        with pytest.raises(ModelError, match=r"^LiteLLM cannot be imported: ModuleNotFoundError: .*; fix: reinstall it"):
            client.litellm()
    assert isinstance(client._LOADED["error"], ImportError)
    assert not client._LOCK.locked()


def test_no_usable_temporary_folder_while_litellm_loads_says_so(monkeypatch):
    monkeypatch.setattr(client, "_LOADED", {"error": FileNotFoundError(
        2, "No usable temporary directory found in ['/tmp', '/var/tmp']")})
    with pytest.raises(ModelError, match=r"temporary directory .*; fix: set TMPDIR to a writable folder"):
        client.litellm()


def test_start_import_runs_once_and_litellm_waits_for_it(monkeypatch):
    monkeypatch.setattr(client, "_LOADED", {})
    threads = []
    original = client._import

    def counted():
        threads.append(1)
        original()

    monkeypatch.setattr(client, "_import", counted)
    client.start_import()
    client.start_import()  # under way: nothing more
    module = client.litellm()
    client.start_import()  # done: nothing more
    assert threads == [1] and module is client.litellm() and module.drop_params is True
    assert not client._LOCK.locked()


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


def test_the_collector_is_tuned_while_in_use_and_given_back_by_its_last_user():
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert frozen == 0
    with client.quiet_collector():
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == max(thresholds[0], client.YOUNG_THRESHOLD)
        with client.quiet_collector():  # a second user meanwhile (a run in another thread, an import)
            pass
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == max(thresholds[0], client.YOUNG_THRESHOLD)
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_a_process_that_manages_the_collector_itself_is_left_as_it_is():
    thresholds = gc.get_threshold()
    gc.disable()
    try:
        with client.quiet_collector():
            assert gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds
    finally:
        gc.enable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with client.quiet_collector():
            assert gc.get_threshold() == thresholds
        assert gc.get_freeze_count() == frozen  # its frozen objects stay frozen
    finally:
        gc.unfreeze()


def test_importing_litellm_tunes_the_collector_and_gives_it_back(monkeypatch):
    monkeypatch.setattr(client, "_LOADED", {})
    seen = []
    monkeypatch.setattr(gc, "set_threshold", lambda *values, _set=gc.set_threshold: (seen.append(values), _set(*values)))
    thresholds = gc.get_threshold()
    client.litellm()
    assert seen == [(max(thresholds[0], client.YOUNG_THRESHOLD), *thresholds[1:]), thresholds]
    assert gc.get_freeze_count() == 0


def test_a_run_leaves_the_collector_as_it_was(fake_server):
    server = fake_server(lambda request: OK)
    thresholds = gc.get_threshold()
    result = annotate(ROWS, "sentiment", ["openai/fake"], api_base=server.url, id_column="id", cache=False,
                      progress=False)
    assert result.votes["label"].tolist() == ["positive"] * len(ROWS)
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
