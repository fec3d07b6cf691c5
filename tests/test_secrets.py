"""Credentials never leave the process: not the key in ``Authorization``, not one inside an
API base, not a router's ``os.environ/NAME`` key, not what a provider echoes back. Every
file of the run directory and of the cache is read as bytes, and the terminal and the
exceptions as text, for every form of a canary key."""

import base64
import json
import os
import subprocess
import sys
from urllib.parse import quote

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.identity import public_url, secret_forms, url_secrets
from llm_annotator.core.models import ModelSpec
from llm_annotator.providers import endpoints
from llm_annotator.providers.redaction import redact, secrets_of
from llm_annotator.testing import Reply, echoing_responder, user_text

pytestmark = pytest.mark.filterwarnings("ignore:run (failed|partial)")

CANARY = "sk-canary-0123456789abcdef0123"
FORMS = [CANARY, quote(CANARY, safe=""), base64.b64encode(CANARY.encode()).decode(),
         base64.b64encode(f"user:{CANARY}".encode()).decode()]
OK = '{"sentiment": "positive"}'


def number(request):
    return int(user_text(request).split("number ")[1].split()[0])


echoing = echoing_responder(OK, CANARY, number)


def leaks(*roots):
    """Files under ``roots`` whose bytes hold any form of the canary."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and any(form.encode() in path.read_bytes() for form in FORMS):
                found.append(str(path.relative_to(root)))
    return found


def leaked(text):
    return [form for form in FORMS if form in text]


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "llm_annotator", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "items.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(12)],
                  "text": [f"sentence number {i} here" for i in range(12)]}).to_csv(path, index=False)
    return path


# -- the helpers, by value --------------------------------------------------------------------

def test_credentials_inside_a_url_are_found_and_dropped_from_its_public_form():
    assert url_secrets(f"http://user:{CANARY}@127.0.0.1:8000/v1") == [CANARY, f"user:{CANARY}"]
    assert url_secrets(f"https://{CANARY}@proxy.example/v1") == [CANARY]
    assert url_secrets(f"https://h/v1?api-key={CANARY}&api-version=2024") == [CANARY]
    assert url_secrets("https://h/v1?api-version=2024") == [] and url_secrets(None) == []
    assert public_url(f"http://user:{CANARY}@[::1]:8000/v1/?key={CANARY}#x") == "http://[::1]:8000/v1"
    assert public_url(f"http://user:{CANARY}@host:notaport/v1") == "http://host/v1"
    assert base64.b64encode(f"user:{CANARY}".encode()).decode() in secret_forms(f"user:{CANARY}")


def test_every_credential_the_job_knows_is_redacted_in_every_form(monkeypatch):
    monkeypatch.setenv("MY_PROXY_CRED", CANARY + "-router")  # a name that says nothing
    monkeypatch.setenv("MY_PROXY_BASE", f"http://user:{CANARY}-base@127.0.0.1:9/v1")
    monkeypatch.setenv("SOME_SERVICE_TOKEN", CANARY + "-env")
    router = {"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/fake", "api_key": "os.environ/MY_PROXY_CRED", "api_base": "os.environ/MY_PROXY_BASE"}}]}
    spec = ModelSpec(model="m", router=router, api_key=CANARY + "-arg",
                     extra={"extra_headers": {"Authorization": f"Bearer {CANARY}-header"}})
    direct = ModelSpec(model="openai/fake", api_base=f"http://h/v1?api-key={CANARY}-query")
    for suffix, which in [("-router", spec), ("-base", spec), ("-env", spec), ("-arg", spec), ("-header", spec),
                          ("-query", direct)]:
        secret = CANARY + suffix
        basic = base64.b64encode(f"user:{secret}".encode()).decode()
        text = f"echo: Bearer {secret}; url ?k={quote(secret, safe='')}; Basic {basic}"
        assert not leaked(redact(text, which)) and CANARY[:12] not in redact(text, which), suffix
    assert "no-key" not in secrets_of(ModelSpec(model="openai/fake", api_key="no-key"))


def test_a_router_base_named_by_the_environment_is_part_of_the_identity_without_its_credential(monkeypatch):
    router = {"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/fake", "api_base": "os.environ/MY_PROXY_BASE"}}]}
    monkeypatch.setenv("MY_PROXY_BASE", f"http://user:{CANARY}@10.0.0.1:8000/v1")
    first = endpoints.identity(ModelSpec(model="m", router=router), 50)
    monkeypatch.setenv("MY_PROXY_BASE", f"http://user:{CANARY}@10.0.0.2:8000/v1")
    second = endpoints.identity(ModelSpec(model="m", router=router), 50)
    assert first.deployments == ("openai/fake@http://10.0.0.1:8000/v1",) and first.digest != second.digest
    assert not leaked(json.dumps(first.model_dump()))


# -- whole runs ----------------------------------------------------------------------------

def test_a_provider_echoing_the_key_leaves_it_in_no_file_and_no_exception(fake_server, tmp_path, isolated_cache):
    server = fake_server(echoing)
    out = tmp_path / "run"
    rows = [{"id": f"r{i}", "text": f"sentence number {i} here"} for i in range(12)]
    result = annotate(rows, "sentiment", [{"model": "openai/fake", "max_retries": 1}], api_base=server.url,
                      api_key=CANARY, id_column="id", out=out, progress=False)
    assert server.headers_seen[0]["authorization"] == f"Bearer {CANARY}"  # it went out, and came back
    votes = result.votes.set_index("item_id")
    assert "Bearer ***" in votes.loc["r1", "error"] and "you sent ***" in votes.loc["r5", "raw"]
    assert not leaks(out, isolated_cache)
    assert not leaked(result.votes.to_json()) and not leaked(json.dumps(result.manifest, default=str))

    refusing = fake_server(lambda request: Reply(status=401, echo=True))
    with pytest.warns(UserWarning, match="refused the credentials") as told:
        refused = annotate(rows[:2], "sentiment", ["openai/fake"], api_base=refusing.url, api_key=CANARY,
                           progress=False)
    assert refused.manifest["status"] == "failed"
    assert not leaked(str(told[0].message)) and not leaked(json.dumps(refused.manifest, default=str))


def test_the_cli_with_the_key_in_the_environment_leaks_nothing(fake_server, table, tmp_path, isolated_cache):
    server = fake_server(echoing)
    out = tmp_path / "run"
    env = {"OPENAI_API_KEY": CANARY, "LLM_ANNOTATOR_CACHE_DIR": str(isolated_cache)}
    proc = cli("annotate", table, "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url,
               "--id-column", "id", "--max-retries", "1", "--out", out, env=env)
    assert proc.returncode in (0, 3), proc.stderr  # complete or partial: the echoes are failed votes
    assert server.headers_seen[0]["authorization"] == f"Bearer {CANARY}"
    assert "Bearer ***" in proc.stderr + (out / "votes.jsonl").read_text()
    assert not leaked(proc.stdout + proc.stderr) and not leaks(out, isolated_cache)
    report = cli("report", out, env=env)
    assert not leaked(report.stdout + report.stderr)


def test_a_router_key_named_through_os_environ_leaks_nothing(fake_server, table, tmp_path, isolated_cache):
    server = fake_server(echoing)
    config = tmp_path / "router.yaml"
    config.write_text(f"model_list:\n- model_name: fake\n  litellm_params:\n    model: openai/fake\n"
                      f"    api_base: {server.url}\n    api_key: os.environ/MY_PROXY_CRED\n")
    out = tmp_path / "run"
    env = {"MY_PROXY_CRED": CANARY, "LLM_ANNOTATOR_CACHE_DIR": str(isolated_cache)}
    proc = cli("annotate", table, "-t", "sentiment", "--router", config, "-m", "fake", "--id-column", "id",
               "--max-retries", "1", "--out", out, env=env)
    assert proc.returncode in (0, 3), proc.stderr
    assert server.headers_seen[0]["authorization"] == f"Bearer {CANARY}"
    assert not leaked(proc.stdout + proc.stderr) and not leaks(out, isolated_cache)


@pytest.mark.parametrize("where", ["user-info", "query"])
def test_a_credential_inside_the_api_base_reaches_no_vote_cache_or_terminal(fake_server, table, tmp_path,
                                                                           isolated_cache, where):
    server = fake_server(echoing)
    base = (server.url.replace("http://", f"http://user:{CANARY}@") if where == "user-info"
            else f"{server.url}?api-key={CANARY}")
    out = tmp_path / "run"
    proc = cli("annotate", table, "-t", "sentiment", "-m", "openai/fake", "--api-base", base, "--id-column", "id",
               "--max-retries", "1", "--out", out, env={"LLM_ANNOTATOR_CACHE_DIR": str(isolated_cache)})
    assert proc.returncode == 3, proc.stderr  # neither form reaches a chat completion: a failed run
    if where == "query":
        assert any(CANARY in path for path in server.paths_seen)  # sent, and echoed in the 404
    assert not leaked(proc.stdout + proc.stderr)
    assert not [p for p in leaks(out, isolated_cache) if p != "run.json"]


def test_a_credential_inside_the_api_base_is_not_in_run_json(fake_server, table, tmp_path, isolated_cache):
    server = fake_server(lambda request: OK)
    out = tmp_path / "run"
    annotate(table, "sentiment", ["openai/fake"], api_base=f"{server.url}?api-key={CANARY}", id_column="id",
             out=out, progress=False)
    assert not leaks(out)
