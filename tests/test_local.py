"""The embedded models, for real: llama.cpp in-process and llama.cpp's own HTTP server."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError, ModelError
from llm_annotator.core.prompts import compile_prompt
from llm_annotator.core.task import load_task
from llm_annotator.providers import local

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "data", "walnut_street.csv")


@pytest.fixture(scope="module")
def rows():
    return pd.read_csv(EXAMPLE).head(6)


def test_label_scoring_gives_a_full_distribution_in_one_call(rows):
    result = annotate(rows, "emotion_melt", ["local/smollm2-135m"], samples=2, id_column="Sr No.",
                      progress=False)
    votes = result.votes
    assert votes["label"].notna().all() and len(votes) == 12
    for _, vote in votes.iterrows():
        dist = vote["distribution"]
        assert set(dist) == set(result.task.labels)
        assert sum(dist.values()) == pytest.approx(1.0)
        assert dist[vote["label"]] > 0  # at temperature 1 each sample is drawn from the distribution
    assert (votes["cost_usd"] == 0).all() and (votes["tokens_in"] >= 0).all()
    assert result.manifest["counts"]["requests"] == 6  # k samples through one call (n)
    again = annotate(rows, "emotion_melt", ["local/smollm2-135m"], samples=2, id_column="Sr No.",
                     progress=False)
    assert again.manifest["counts"]["requests"] == 0 and again.manifest["counts"]["cache_hits"] == 12
    assert again.soft_labels().to_numpy() == pytest.approx(result.soft_labels().to_numpy())


def test_score_mode_samples_follow_the_temperature():
    labels, probs = ["a", "b", "c"], [0.6, 0.3, 0.1]
    assert local.sample_labels(labels, probs, 0.0, 5) == ["a"] * 5
    draws = local.sample_labels(labels, probs, 1.0, 4000)
    assert draws.count("a") / 4000 == pytest.approx(0.6, abs=0.04)
    assert draws.count("c") / 4000 == pytest.approx(0.1, abs=0.03)
    cold = local.sample_labels(labels, probs, 0.25, 4000)  # p^4: 0.6^4 : 0.3^4 : 0.1^4
    assert cold.count("a") / 4000 == pytest.approx(0.6**4 / (0.6**4 + 0.3**4 + 0.1**4), abs=0.03)


def test_multi_token_labels_are_scored_whole():
    model = local.get_model("smollm2-135m")
    messages = [{"role": "user", "content": "How does Ross feel when Rachel leaves? Answer in JSON."}]
    labels = ["sad", "sadness", "completely heartbroken"]
    prefix, suffix = local.answer_prefix("feeling")
    scores, _ = model.score(messages, labels, prefix, suffix)
    # brute force: each continuation token's log-probability from a fresh evaluation
    base = model.prompt_text(messages) + prefix
    first_token_only = []
    for label, score in zip(labels, scores, strict=True):
        full = model._tokens(base + label + suffix)
        shared = model._tokens(base)
        start = 0
        while start < min(len(full), len(shared)) and full[start] == shared[start]:
            start += 1
        steps = []
        for j in range(start, len(full)):
            model.llm.reset()
            model._prefix = []
            model.llm.eval(full[:j])
            steps.append(float(model._logits()[full[j]]))
        assert len(steps) >= 2  # the label and its closing quote: more than one token
        # batched and one-by-one evaluation differ by float noise only
        assert score == pytest.approx(sum(steps), abs=0.03)
        first_token_only.append(abs(sum(steps) - steps[0]))
    assert len(set(np.round(scores, 3))) == 3
    assert max(first_token_only) > 0.5  # scoring the first token alone would be far off


def test_contextual_calibration_divides_by_the_content_free_distribution(rows):
    plain = annotate(rows, "emotion_melt", ["local/smollm2-135m"], progress=False, cache=False)
    calibrated = annotate(rows, "emotion_melt", [{"model": "local/smollm2-135m", "calibrate": True}],
                          progress=False, cache=False)
    blank = {f: "N/A" for f in compile_prompt(load_task("emotion_melt")).fields}
    prior = annotate([blank], "emotion_melt", ["local/smollm2-135m"], progress=False,
                     cache=False).soft_labels().to_numpy()[0]
    expected = plain.soft_labels().to_numpy() / prior
    expected /= expected.sum(axis=1, keepdims=True)
    assert calibrated.soft_labels().to_numpy() == pytest.approx(expected, abs=1e-6)
    assert not np.allclose(calibrated.soft_labels().to_numpy(), plain.soft_labels().to_numpy())


def test_generation_mode_samples_are_distinct_and_parsed(rows):
    spec = {"model": "local/smollm2-135m", "mode": "generate", "max_tokens": 40, "temperature": 1.0}
    result = annotate(rows.head(2), "sentiment", [spec], samples=3, columns={"text": "Utterance"},
                      progress=False)
    raws = result.votes["raw"].tolist()
    assert len(set(raws)) > 1
    for _, vote in result.votes.iterrows():
        assert (vote["label"] in {"positive", "negative", "neutral"}) != (vote["error"] is not None)
        assert vote["distribution"] is None


def test_gemma_is_assembled_verified_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_ANNOTATOR_MODELS_DIR", str(tmp_path))
    target = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    target.write_bytes(b"not a model")  # a corrupted earlier assembly is replaced
    local._VERIFIED.discard(str(target))
    path, chat = local.resolve("gemma3-270m")
    assert path == target and chat is False
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == local.GEMMA3_SHA256


def test_a_model_file_with_the_wrong_sha256_is_refused(monkeypatch):
    source = local.SOURCES["smollm2-135m"]
    monkeypatch.setitem(local.SOURCES, "smollm2-135m",
                        local.LocalSource(source.name, source.locate, "0" * 64, True, source.package))
    monkeypatch.setattr(local, "_VERIFIED", set())
    with pytest.raises(ModelError, match=r"has sha256 .* not the expected 0000"):
        local.resolve("smollm2-135m")


def test_any_gguf_file_by_path(rows):
    path = local.resolve("smollm2-135m")[0]
    result = annotate(rows.head(2), "emotion_melt", [f"local/{path}"], progress=False)
    assert result.votes["label"].notna().all()
    with pytest.raises(ConfigError, match="unknown embedded model 'local/gpt-5'"):
        annotate(rows.head(1), "emotion_melt", ["local/gpt-5"], progress=False)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    port = _free_port()
    path = local.resolve("smollm2-135m")[0]
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("wb")  # a pipe would fill and block it
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
                             "--port", str(port), "--model_alias", "smollm2", "--n_ctx", "2048"],
                            stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited; see {log.name}") from None
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_llama_cpp_server_through_litellm_http(llama_server, rows, tmp_path):
    options = dict(samples=2, id_column="Sr No.", api_base=llama_server, progress=False,
                   out=tmp_path / "run", max_tokens=30, temperature=1.0, columns={"text": "Utterance"})
    result = annotate(rows.head(3), "sentiment", ["openai/smollm2"], **options)
    votes = result.votes
    assert len(votes) == 6
    # llama.cpp's server ignores n: the toolkit notices and asks again for the rest
    assert result.manifest["n_not_honoured"] == ["openai/smollm2"], (result.manifest["counts"], votes[["error", "raw"]].to_dict("records"))
    assert result.manifest["counts"]["requests"] == 6
    assert votes["tokens_in"].sum() > 0 and votes["raw"].notna().all()
    valid = votes[votes["label"].notna()]
    assert len(valid) >= 3  # the server constrains answers to the JSON schema (json_object form)
    with_dist = valid[valid["distribution"].notna()]
    assert len(with_dist) >= 1  # the server's logprobs become label distributions
    for dist in with_dist["distribution"]:
        assert sum(dist.values()) == pytest.approx(1.0)
    replay = annotate(rows.head(3), "sentiment", ["openai/smollm2"], **options)
    assert replay.manifest["counts"]["requests"] == 0
    assert replay.votes["raw"].tolist() == votes["raw"].tolist()


def test_two_local_models_agree_end_to_end_on_meld_dev(shared_data):
    dev = pd.read_csv(shared_data / "meld" / "dev_sent_emo.csv").head(50)
    result = annotate(dev, "emotion_melt", ["local/smollm2-135m", "local/gemma3-270m"], id_column="Sr No.",
                      progress=False)
    figures = result.agreement(gold="Emotion")
    assert figures["n_items"] == 50 and figures["annotators"] == ["local/smollm2-135m", "local/gemma3-270m"]
    table = result.labels()
    assert table["n_valid"].eq(2).all()
    kappa = figures["pairwise_cohen_kappa"]["local/smollm2-135m"]["local/gemma3-270m"]
    assert -1 <= kappa <= 1 and -1 <= figures["krippendorff_alpha"] <= 1
    for name in figures["annotators"]:
        assert figures["vs_gold"][name]["n"] == 50
        assert 0 <= figures["vs_gold"][name]["accuracy"] <= 1
