"""Rows to chat messages through sandboxed Jinja.

Templates run in :class:`jinja2.sandbox.SandboxedEnvironment` with ``StrictUndefined``:
a field the data lacks is an error that names the field and the row, never an empty
string, and a template cannot reach Python internals. Data values are passed as
variables, so a value such as ``{{ 7*7 }}`` is inserted as those very characters.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from llm_annotator.core.errors import DataError, TemplateError
from llm_annotator.core.task import RESERVED_VARIABLES, Task

Messages = list[dict[str, str]]


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                keep_trailing_newline=False)


@dataclass(frozen=True)
class Prompt:
    """A task's templates, compiled once."""

    task: Task
    system: jinja2.Template | None
    user: jinja2.Template
    fields: frozenset[str]

    def render(self, row: Mapping[str, Any], *, item_id: str = "", where: str = "") -> Messages:
        """Chat messages for one row; ``where`` names the row in errors ("data.csv row 12")."""
        for field in self.fields:
            value = row.get(field, _MISSING)
            if value is _MISSING:
                raise DataError(f"{where}: the template {self.task.name!r} needs field {field!r}, which the data lacks",
                                fix=f"add a column {field!r} or map one to it (--map {field}=COLUMN)")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise DataError(f"{where} (item {item_id}): field {field!r} is empty (null/NaN)",
                                fix="fill the value or drop the row")
        variables = {**row, "labels": list(self.task.labels),
                     "label_descriptions": dict(self.task.label_descriptions), "item_id": item_id}
        variables.setdefault("context", [])
        try:
            messages: Messages = []
            if self.system is not None:
                messages.append({"role": "system", "content": self.system.render(variables).strip()})
            messages.append({"role": "user", "content": self.user.render(variables).strip()})
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"template {self.task.source} was refused by the sandbox: {exc}",
                                fix="use only the row's fields and plain Jinja filters") from None
        except jinja2.UndefinedError as exc:
            raise DataError(f"{where} (item {item_id}): template {self.task.source}: {exc}",
                            fix="add the missing field to the data or to the template's variables") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {self.task.source} failed on {where}: {exc}",
                                fix="correct the template") from None
        return messages


def compile_prompt(task: Task) -> Prompt:
    """Compile the system and user templates of ``task``; syntax errors name the line."""
    env = _environment()
    fields: set[str] = set()
    compiled: list[jinja2.Template | None] = []
    for part, text in (("system", task.system), ("body", task.template)):
        if text is None:
            compiled.append(None)
            continue
        try:
            ast = env.parse(text)
            fields |= meta.find_undeclared_variables(ast)
            compiled.append(env.from_string(text))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{task.source} ({part} line {exc.lineno}): Jinja syntax error: {exc.message}",
                                fix="correct the template syntax") from None
    user = compiled[1]
    assert user is not None
    return Prompt(task=task, system=compiled[0], user=user,
                  fields=frozenset(fields - RESERVED_VARIABLES))


def prompt_hash(messages: Messages, response_format: Mapping[str, Any] | None) -> str:
    """sha256 of what exactly is asked: the messages and the answer schema."""
    payload = json.dumps({"messages": messages, "response_format": response_format},
                         sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


_MISSING = object()

__all__ = ["Messages", "Prompt", "compile_prompt", "prompt_hash"]
