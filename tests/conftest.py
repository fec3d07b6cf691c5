"""Shared fixtures: an isolated cache per test, loopback servers, the reference data."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings

from llm_annotator.testing import FakeOpenAI, Responder

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# CI runs the fuzzers on the same examples every time (a red CI names a reproducible
# input); a developer's run explores new ones and keeps failures in .hypothesis/.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own answer cache; the user's cache is never touched."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLM_ANNOTATOR_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeOpenAI]]:
    """Start FakeOpenAI servers on 127.0.0.1; all are stopped after the test."""
    servers: list[FakeOpenAI] = []

    def start(respond: Responder | None = None, **options: object) -> FakeOpenAI:
        server = FakeOpenAI(respond, **options).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: required under CI=true, else skipped when a clone lacks it."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"reference data missing at {SHARED_DATA} (CI must provide ../shared/data)")
        pytest.skip(f"reference data not found at {SHARED_DATA}: see docs/data.md for where it comes from")
    return SHARED_DATA


def sentences(n: int) -> list[dict[str, str]]:
    return [{"id": f"s{i}", "text": f"sentence number {i} about topic {i % 7}"} for i in range(n)]


#: The EmoDB clips of the ``corpus`` fixture, in row order.
MELT_CLIPS = ["03a01Fa.wav", "03a01Nc.wav", "03a01Wa.wav", "03a02Fc.wav"]


@pytest.fixture
def corpus(shared_data: Path, tmp_path: Path) -> Path:
    """Four EmoDB clips with MELD's columns (two dialogues of two turns)."""
    folder = tmp_path / "corpus"
    (folder / "wav").mkdir(parents=True)
    for name in MELT_CLIPS:
        shutil.copy(shared_data / "emodb" / "wav" / name, folder / "wav" / name)
    pd.DataFrame({
        "id": [f"u{i}" for i in range(4)], "Speaker": ["Joey", "Ross", "Monica", "Joey"],
        "Season": [3, 3, 5, 5], "Episode": [5, 5, 2, 2], "Dialogue_ID": [1, 1, 2, 2], "Utterance_ID": [0, 1, 0, 1],
        "Utterance": ["How you doin'?", "We were on a break!", "I know!", "Could I BE any more hungry?"],
        "Emotion": ["joy", "anger", "surprise", "joy"], "clip": [f"wav/{n}" for n in MELT_CLIPS],
    }).to_csv(folder / "data.csv", index=False)
    return folder
