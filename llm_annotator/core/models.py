"""Annotator specifications: a model string plus the parameters that make it distinct."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from llm_annotator.core.errors import ConfigError
from llm_annotator.core.identity import is_secret_name, public_url

#: The embedded offline model used when no model is named.
DEFAULT_MODEL = "local/smollm2-135m"


class ModelSpec(BaseModel):
    """One annotator: a model plus a prompt. ``name`` defaults to the model string, or to
    ``MODEL/TASK`` when the annotator has a ``task`` of its own (a built-in task name, a
    template path or a :class:`~llm_annotator.core.task.Task`; unset: the job's task).

    ``api_key`` is held as a secret: it is never written to a cache key, a vote, a log or
    ``run.json``. Leave it unset to use LiteLLM's usual environment (``OPENAI_API_KEY`` ...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    name: str = ""
    temperature: float = 1.0
    max_tokens: int | None = None
    top_p: float | None = None
    api_base: str | None = None
    api_key: SecretStr | None = Field(default=None, repr=False)
    concurrency: int = 16
    timeout: float = 120.0
    max_retries: int = 6
    use_n: bool | None = None          # None: where the provider supports it
    logprobs: bool | None = None       # None: where the provider supports it
    json_schema: bool | None = None    # None: where the provider supports it
    mode: str | None = None            # local models: "score" or "generate"
    calibrate: bool = False            # local label scoring: contextual calibration
    router: dict[str, Any] | None = Field(default=None, repr=False)  # LiteLLM Router config (model_list, ...)
    price: tuple[float, float] | None = None  # US dollars per million input and output tokens
    media: tuple[Literal["audio", "image"], ...] | None = None  # media kinds taken (None: LiteLLM's table)
    task: Any = None                   # this annotator's own task (None: the job's)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("router", mode="before")
    @classmethod
    def _router(cls, value: Any) -> Any:
        if isinstance(value, str):
            import yaml

            try:
                with open(value, encoding="utf-8") as handle:
                    value = yaml.safe_load(handle)
            except OSError as exc:
                raise ValueError(f"cannot read the router config {value}: {exc.strerror}") from None
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("model_list"), list)):
            raise ValueError("a router config is a mapping with a 'model_list' list")
        return value

    @property
    def deployments(self) -> list[dict[str, Any]]:
        """The router's deployments of this model name (empty without a router)."""
        if not self.router:
            return []
        return [d for d in self.router["model_list"] if d.get("model_name") == self.model]

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not value or not value.strip() or value != value.strip():
            raise ValueError("empty model string")
        return value

    @field_validator("task")
    @classmethod
    def _task(cls, value: Any) -> Any:
        from llm_annotator.core.task import Task

        if value is None or isinstance(value, Task):
            return value
        if isinstance(value, str | Path) and str(value).strip():
            return str(value).strip()
        raise ValueError(f"task {value!r} is not a task name, a template path or a Task")

    @property
    def task_name(self) -> str | None:
        """The name of the annotator's own task (None: it uses the job's)."""
        if self.task is None:
            return None
        return self.task.name if not isinstance(self.task, str) else Path(self.task).stem

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if not self.name:
            object.__setattr__(self, "name", self.model if self.task is None else f"{self.model}/{self.task_name}")
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature {self.temperature} is outside 0..2")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p {self.top_p} is outside (0, 1]")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.price is not None and min(self.price) < 0:
            raise ValueError(f"price {list(self.price)} is negative")
        if self.mode not in (None, "score", "generate"):
            raise ValueError(f"mode {self.mode!r} is not 'score' or 'generate'")
        return self

    @property
    def is_local(self) -> bool:
        return self.model.startswith("local/")

    def decoding(self, max_tokens: int) -> dict[str, Any]:
        """The decoding parameters that define this annotator's answers (cache key part)."""
        params: dict[str, Any] = {"temperature": self.temperature,
                                  "max_tokens": self.max_tokens or max_tokens}
        if self.top_p is not None:
            params["top_p"] = self.top_p
        if self.mode is not None:
            params["mode"] = self.mode
        if self.calibrate:
            params["calibrate"] = True
        if self.router:  # what the deployments are, never their keys
            params["deployments"] = sorted(str(d.get("litellm_params", {}).get("model")) for d in self.deployments)
        for key in sorted(self.extra):
            if not is_secret_name(key):
                params[key] = without_secrets(self.extra[key])
        return params

    def public(self) -> dict[str, Any]:
        """What ``run.json`` records: everything but secrets."""
        data = self.model_dump(exclude={"api_key", "extra", "router", "task"})
        if self.task is not None:
            data["task"] = self.task_name
        data["api_base"] = public_url(self.api_base)
        if self.router:
            data["router_deployments"] = [
                {"model": d.get("litellm_params", {}).get("model"),
                 "api_base": public_url(d.get("litellm_params", {}).get("api_base"))}
                for d in self.deployments]
        data["extra"] = without_secrets(self.extra)
        return data


def without_secrets(value: Any) -> Any:
    """Parameters as they may be recorded: at every depth, an entry whose key names a
    credential (``api_key``, ``Authorization``, ``X-Api-Key`` in ``extra_headers``) is left out."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if not is_secret_name(str(k))}
    if isinstance(value, list | tuple):
        return [without_secrets(v) for v in value]
    return value


def _named(entry: Any) -> str:
    """An annotator entry named in a message: its name and model, never its settings (a
    key, a router's keys)."""
    if isinstance(entry, dict):
        name, model = entry.get("name"), entry.get("model")
        return repr(f"{name} ({model})" if name and model else (name or model or "?"))
    return repr(entry.name if isinstance(entry, ModelSpec) else entry) if isinstance(entry, str | ModelSpec) \
        else f"of type {type(entry).__name__}"


def as_specs(models: Any, **defaults: Any) -> list[ModelSpec]:
    """Model strings, dicts or specs to a list of specs; ``defaults`` fill unset fields."""
    if models is None:
        models = [DEFAULT_MODEL]
    if isinstance(models, str | dict | ModelSpec):
        models = [models]
    defaults = {k: v for k, v in defaults.items() if v is not None}
    specs: list[ModelSpec] = []
    for entry in models:
        try:
            if isinstance(entry, ModelSpec):
                spec = entry
            elif isinstance(entry, str):
                spec = ModelSpec(model=entry, **defaults)
            elif isinstance(entry, dict):
                spec = ModelSpec(**{**defaults, **entry})
            else:
                raise ConfigError(f"model {_named(entry)} is not a model string, dict or ModelSpec",
                                  fix="pass models=['gpt-4o', ...]")
        except ValueError as exc:
            errors = getattr(exc, "errors", None)
            detail = errors()[0]["msg"] if callable(errors) else str(exc)
            raise ConfigError(f"model {_named(entry)}: {str(detail).removeprefix('Value error, ')}",
                              fix="correct the model's parameters") from None
        specs.append(spec)
    names = [s.name for s in specs]
    person = next((n for n in names if n.startswith("human:") or n == "consensus"), None)
    if person:
        raise ConfigError(f"annotator {person!r}: 'consensus' and names starting with 'human:' are kept for the "
                          f"consensus and reviewers", fix="give the model another name=")
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"annotator {duplicate!r} is named twice",
                          fix="give each ModelSpec a distinct name=")
    return specs


__all__ = ["DEFAULT_MODEL", "ModelSpec", "as_specs", "without_secrets"]
