"""Tasks: a label set, a prompt template and where the label sits in the answer.

A task is one file in ``prompt_templates/`` (or any path): YAML front matter between
``---`` lines, then the Jinja body that becomes the user message::

    ---
    name: sentiment
    labels: [positive, negative, neutral]
    output: sentiment            # JSON field holding the label; omit for a bare answer
    system: You label the sentiment of sentences.
    ---
    Sentence: {{ text }}
    Answer with a JSON object {"sentiment": one of {{ labels | join(", ") }}}.

A task may declare several named ``outputs`` of other kinds (ordinal, numeric,
multi-label; :mod:`llm_annotator.core.outputs`) and ``explanations``, free-text fields
kept with each vote and never read as labels. The first output is the primary one: the
task's ``labels``, ``aliases``, ``output`` and ``scale`` are its. ``media`` declares row
fields that hold audio or images (:mod:`llm_annotator.core.media`); ``demonstrations``
takes k labelled examples per item from a pool (:mod:`llm_annotator.core.demos`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llm_annotator.core.demos import DemoSpec
from llm_annotator.core.errors import TaskError, TemplateError
from llm_annotator.core.media import MediaSpec
from llm_annotator.core.outputs import OutputSpec, label_tuple

#: Names an explanation may not have: the columns of the explanations table, and the
#: provider's reasoning content.
_EXPLANATION_RESERVED = frozenset({"item_id", "annotator", "sample_index", "reasoning"})

#: Variables a template may use that do not come from the data row.
RESERVED_VARIABLES = frozenset({"labels", "label_descriptions", "context", "item_id", "media", "demonstrations"})

_KEEP: Any = object()
_DEMO_FORM = "demonstrations: {pool: PATH, label: COLUMN, k: 4, select: stratified|similar}"


class Task(BaseModel):
    """A labelling task: what to ask, which answers are valid, where the label is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    labels: tuple[str, ...] = ()
    label_descriptions: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    output: str | None = None
    json_fields: tuple[str, ...] = ()
    system: str | None = None
    template: str
    max_tokens: int = 256
    context_window: int = 0
    expected_output_tokens: int | None = None
    scale: str = "nominal"
    outputs: tuple[OutputSpec, ...] = ()
    explanations: tuple[str, ...] = ()
    media: dict[str, MediaSpec] = Field(default_factory=dict)  # row field -> audio or image (core/media.py)
    demonstrations: DemoSpec | None = None  # k labelled examples per item from a pool (core/demos.py)
    source: str = "<string>"

    @model_validator(mode="before")
    @classmethod
    def _primary_output(cls, data: Any) -> Any:
        """Declared outputs as a list; the task's label set and output field are the first's."""
        if not isinstance(data, Mapping) or not data.get("outputs"):
            return data
        raw = data["outputs"]
        if isinstance(raw, Mapping):
            specs = []
            for name, spec in raw.items():
                if spec is not None and not isinstance(spec, Mapping):
                    raise ValueError(f"output {name!r} must be a mapping (kind, path, labels, range ...)")
                specs.append({"name": str(name), **(spec or {})})
        elif isinstance(raw, list | tuple):
            specs = [s.model_dump() if isinstance(s, OutputSpec) else dict(s) for s in raw]
        else:
            raise ValueError("outputs must map each output's name to its kind, path and values")
        first = specs[0]
        if first.get("kind", "categorical") != "numeric":
            for key in ("labels", "aliases"):
                if not first.get(key) and data.get(key):
                    first[key] = data[key]
        checked = [_output_spec(spec) for spec in specs]
        primary = checked[0]
        if data.get("output") not in (None, primary.field):
            raise ValueError(f"'output' ({data['output']}) is not the first output's path ({primary.field}): "
                             "declare the fields under 'outputs' only")
        return {**data, "outputs": specs, "labels": primary.categories, "aliases": primary.aliases,
                "output": primary.field, "scale": primary.scale}

    @field_validator("demonstrations", mode="before")
    @classmethod
    def _demonstrations(cls, value: Any) -> Any:
        """One-line errors naming the key and the form it takes (pydantic checks the rest)."""
        if value is None or isinstance(value, DemoSpec):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a mapping: {_DEMO_FORM}")
        unknown = sorted(set(value) - set(DemoSpec.model_fields))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}; the keys are {', '.join(DemoSpec.model_fields)}")
        for key, what in (("pool", "the pool file (PATH)"), ("label", "the pool's gold label column (COLUMN)")):
            if not isinstance(value.get(key), str) or not value[key].strip():
                raise ValueError(f"{key} is missing: give {what}, as in {_DEMO_FORM}")
        k = value.get("k", 4)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 64:
            raise ValueError(f"k must be a whole number from 1 to 64 (examples per item), not {k!r}")
        if value.get("select", "stratified") not in ("stratified", "similar"):
            raise ValueError(f"select must be stratified or similar, not {value['select']!r}")
        if value.get("embedding_model") and value.get("select", "stratified") != "similar":
            raise ValueError("embedding_model is used by select: similar only; set select: similar or drop it")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_are_strings(cls, value: Any) -> Any:
        return label_tuple(value)

    @model_validator(mode="after")
    def _check(self) -> Task:
        seen: dict[str, str] = {}
        for label in self.labels:
            if not label:
                raise ValueError("the label set contains an empty label")
            key = label.casefold()
            if key in seen:
                raise ValueError(f"the label set lists {label!r} twice")
            seen[key] = label
        for alias, target in self.aliases.items():
            if self.labels and target not in self.labels:
                raise ValueError(f"alias {alias!r} points to {target!r}, which is not a label")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        names = [spec.name for spec in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError("two outputs have the same name")
        fields = [spec.field for spec in self.outputs] + list(self.explanations)
        if len(set(fields)) != len(fields):
            raise ValueError("two outputs or explanations read the same JSON field")
        everything = [*fields, *(f for f in self.json_fields if f not in fields)]
        for a in everything:
            for b in everything:
                if b.startswith(a + "."):
                    raise ValueError(f"the fields {a!r} and {b!r} overlap: one holds the other")
        for path in self.explanations:
            if path in _EXPLANATION_RESERVED:
                raise ValueError(f"the explanation {path!r} has a name the explanations table uses itself "
                                 f"({', '.join(sorted(_EXPLANATION_RESERVED))}): give the field another name")
        if len(self.outputs) > 1 or self.explanations:
            for spec in self.outputs:
                if spec.kind != "numeric" and not spec.labels:
                    raise ValueError(f"output {spec.name!r} has no labels")
        return self

    @cached_property
    def output_specs(self) -> tuple[OutputSpec, ...]:
        """Every output of the task, the primary first (one, for a task without ``outputs``)."""
        if self.outputs:
            return self.outputs
        name = self.output.split(".")[-1] if self.output else "label"
        kind: Literal["ordinal", "categorical"] = "ordinal" if self.scale == "ordinal" else "categorical"
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "label"
        return (OutputSpec(name=name, kind=kind, path=self.output, labels=self.labels, aliases=self.aliases),)

    @property
    def primary(self) -> OutputSpec:
        return self.output_specs[0]

    @property
    def structured(self) -> bool:
        """Whether votes carry per-output values (several outputs, a numeric or multi-label
        primary, or explanations): a plain one-label task keeps its votes as they were."""
        return len(self.output_specs) > 1 or self.primary.kind in ("numeric", "multi_label") \
            or bool(self.explanations)

    def output_spec(self, name: str) -> OutputSpec:
        for spec in self.output_specs:
            if spec.name == name:
                return spec
        raise TaskError(f"task {self.name!r} has no output {name!r}",
                        fix=f"use one of {', '.join(s.name for s in self.output_specs)}")

    def for_output(self, name: str) -> Task:
        """The task as seen by one of its outputs: its categories as the label set, its
        field as the output (the views of :meth:`AnnotationResult.output`)."""
        spec = self.output_spec(name)
        if spec is self.primary and len(self.output_specs) == 1:
            return self
        return Task.model_validate({**self.model_dump(exclude={"labels", "aliases", "output", "scale"}),
                                    "outputs": [spec.model_dump()]})

    @cached_property
    def template_hash(self) -> str:
        """sha256 over everything that defines the task (labels, template, output)."""
        # fields added later are left out when unused, so the hashes of existing tasks stay as they were
        unused = {name for name in ("media", "demonstrations") if not getattr(self, name)}
        payload = self.model_dump(exclude={"source", *unused})
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_labels(self, labels: Sequence[str]) -> Task:
        """The same task with the caller's label set (for ``classification``)."""
        data = self.model_dump()
        if self.outputs:
            data["outputs"] = [{**data["outputs"][0], "labels": tuple(labels)}, *data["outputs"][1:]]
            data["labels"] = tuple(labels)
        try:
            return Task.model_validate({**data, "labels": tuple(labels)})
        except ValueError as exc:
            raise TaskError(f"label set for task {self.name!r}: {_first_error(exc)}",
                            fix="pass distinct, non-empty labels") from None

    def with_demonstrations(self, spec: Any = _KEEP, **changes: Any) -> Task:
        """The same task with other demonstrations: ``spec`` (a mapping or a DemoSpec)
        replaces them, ``None`` removes them, ``changes`` alter single keys
        (``task.with_demonstrations(select="similar", k=8)``)."""
        if spec is _KEEP:
            base: dict[str, Any] | None = self.demonstrations.model_dump() if self.demonstrations else {}
        elif spec is None:
            base = None
        else:
            base = spec.model_dump() if isinstance(spec, DemoSpec) else dict(spec)
        value = {**base, **changes} if base is not None else (dict(changes) or None)
        try:
            return Task.model_validate({**self.model_dump(), "demonstrations": value})
        except ValueError as exc:
            raise TaskError(f"task {self.name!r}: {_first_error(exc)}",
                            fix="correct the demonstrations (" + _DEMO_FORM + ")") from None

    def require_labels(self) -> Task:
        if not self.labels:
            raise TaskError(f"task {self.name!r} ({self.source}) has no label set",
                            fix="pass labels=[...] (CLI: --labels a,b,c)")
        return self

    def response_schema(self) -> dict[str, Any] | None:
        """A strict JSON schema: each output's field (an enum of its labels, a number, or
        an array of labels), the explanations and ``json_fields`` as strings."""
        if self.output is None or not self.labels:
            return None
        root: dict[str, Any] = {"type": "object", "properties": {}, "required": [],
                                "additionalProperties": False}
        strings = [(f, {"type": "string"}) for f in (*self.json_fields, *self.explanations)]
        for path, spec in strings + [(s.field, _schema_of(s)) for s in self.output_specs]:
            node = root
            *parents, leaf = path.split(".")
            for part in parents:
                if part not in node["properties"]:
                    node["properties"][part] = {"type": "object", "properties": {},
                                                "required": [], "additionalProperties": False}
                    node["required"].append(part)
                node = node["properties"][part]
            if leaf not in node["properties"]:
                node["required"].append(leaf)
            node["properties"][leaf] = spec
        return {"type": "json_schema",
                "json_schema": {"name": _schema_name(self.name), "schema": root, "strict": True}}


def _output_spec(data: dict[str, Any]) -> OutputSpec:
    """One output's declaration, its errors naming the output."""
    try:
        return OutputSpec.model_validate(data)
    except ValueError as exc:
        message = _first_error(exc)
        name = data.get("name")
        if name is not None and not message.startswith("output ") and f"output {name!r}" not in message:
            message = f"output {name!r}: {message}"
        raise ValueError(message) from None


def _schema_of(spec: OutputSpec) -> dict[str, Any]:
    if spec.kind == "numeric":
        return {"type": "integer" if spec.integer else "number"}
    if spec.kind == "multi_label":
        return {"type": "array", "items": {"type": "string", "enum": list(spec.labels)}}
    return {"type": "string", "enum": list(spec.labels)}


def _schema_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64] or "answer"


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", exc)).removeprefix("Value error, ")
        return f"{where}: {msg}" if where else msg
    return str(exc)


def builtin_dir() -> Path:
    """Where the shipped templates live (package data in a wheel, or the checkout)."""
    try:
        path = Path(str(resources.files("llm_annotator.prompt_templates")))
        if path.is_dir():
            return path
    except ModuleNotFoundError:  # pragma: no cover - broken install
        pass
    return Path(__file__).resolve().parent.parent.parent / "prompt_templates"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.jinja"))


def parse_task_text(text: str, source: str) -> Task:
    """A task from the text of a template file (front matter + body)."""
    if not text.startswith("---"):
        raise TemplateError(f"{source}: a template starts with YAML front matter between '---' lines",
                            fix="add '---\\nlabels: [...]\\n---' above the prompt")
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise TemplateError(f"{source}: the front matter is not closed by a '---' line",
                            fix="end the YAML block with a line holding only '---'")
    head, body = parts[0][3:], parts[1]
    body = body.split("\n", 1)[1] if "\n" in body else ""
    try:
        meta = yaml.safe_load(head) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 2}" if mark is not None else ""
        raise TemplateError(f"{source}{line}: the front matter is not valid YAML ({getattr(exc, 'problem', exc)})",
                            fix="correct the YAML between the '---' lines") from None
    if not isinstance(meta, dict):
        raise TemplateError(f"{source}: the front matter must be a YAML mapping",
                            fix="write 'key: value' lines between the '---' lines")
    meta.setdefault("name", Path(source).stem)
    try:
        return Task.model_validate({**meta, "template": body.strip("\n"), "source": source})
    except ValueError as exc:
        raise TaskError(f"{source}: {_first_error(exc)}",
                        fix="correct the front matter of the template") from None


def load_task(task: str | Path | Task, labels: Sequence[str] | None = None) -> Task:
    """A task by built-in name (``emotion_melt``), by path, or as given.

    ``labels`` replaces the task's label set (required for ``classification``).
    """
    if isinstance(task, Task):
        result = task
    else:
        text_name = str(task)
        path = Path(text_name)
        if path.suffix and path.exists():
            source = str(path)
        elif (builtin_dir() / f"{text_name}.jinja").is_file():
            path = builtin_dir() / f"{text_name}.jinja"
            source = f"prompt_templates/{text_name}.jinja"
        elif path.suffix:
            raise TemplateError(f"template file {text_name} does not exist",
                                fix="check the path, or use a built-in task name")
        else:
            raise TemplateError(f"unknown task {text_name!r}",
                                fix=f"use one of {', '.join(builtin_names())} or a path to a .jinja file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"cannot read template {source}: {exc}",
                                fix="make the file a readable UTF-8 text file") from None
        result = parse_task_text(text, source)
    if labels is not None:
        result = result.with_labels(tuple(labels))
    return result.require_labels()


__all__ = ["RESERVED_VARIABLES", "Task", "builtin_names", "load_task", "parse_task_text"]
