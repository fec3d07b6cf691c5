"""Rows to chat messages through sandboxed Jinja.

Templates run in :class:`jinja2.sandbox.SandboxedEnvironment` with ``StrictUndefined``:
a field the data lacks is an error that names the field and the row, never an empty
string, and a template cannot reach Python internals. Data values are passed as
variables, so a value such as ``{{ 7*7 }}`` is inserted as those very characters.

A task with ``media`` fields places them with ``{{ media("clip") }}``: the user message
becomes a list of content parts, text and media in the template's order
(:mod:`llm_annotator.core.media`); a task without media keeps a plain text message.

A task with ``demonstrations`` gets, per item, k labelled examples from its pool as the
variable ``demonstrations`` (:mod:`llm_annotator.core.demos`), which the body loops over::

    {% for demo in demonstrations %}{{ demo.Speaker }} said: "{{ demo.Utterance }}" -> {{ demo.label }}
    {% endfor %}

Every task's templates may use the variable; it is an empty list when the task has none.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from llm_annotator.core.demos import Embed, Selector, load_pool
from llm_annotator.core.errors import DataError, TemplateError
from llm_annotator.core.media import MARK, MARK_PATTERN, content_part
from llm_annotator.core.task import RESERVED_VARIABLES, Task

#: Chat messages; a message's content is a text, or a list of content parts with media.
Messages = list[dict[str, Any]]


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
    media_root: Path | None = None
    token: str = dataclass_field(default_factory=lambda: secrets.token_hex(8))  # marks media() in the rendered text
    embed: Embed | None = None  # texts -> vectors, for demonstrations chosen by embedding similarity
    _state: dict[str, Any] = dataclass_field(default_factory=dict, compare=False, repr=False)  # the pool, read once

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
        selector = self._selector()
        variables["demonstrations"] = [] if selector is None else \
            selector.variables(selector.choose(row, item_id))
        variables.setdefault("context", [])
        try:
            messages: Messages = []
            if self.system is not None:
                system = self.system.render({**variables, "media": _no_media}).strip()
                messages.append({"role": "system", "content": system})
            text = self.user.render({**variables, "media": self._marker}).strip()
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"template {self.task.source} was refused by the sandbox: {exc}",
                                fix="use only the row's fields and plain Jinja filters") from None
        except jinja2.UndefinedError as exc:
            raise DataError(f"{where} (item {item_id}): template {self.task.source}: {exc}",
                            fix="add the missing field to the data or to the template's variables") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {self.task.source} failed on {where}: {exc}",
                                fix="correct the template") from None
        content = self._parts(text, row, where) if self.task.media else text
        messages.append({"role": "user", "content": content})
        return messages

    def demonstrations_of(self, row: Mapping[str, Any], item_id: str) -> list[str] | None:
        """The pool ids of the examples :meth:`render` shows this item, in the order shown.

        The contract, for recording them with each vote: ``None`` when the task declares no
        ``demonstrations``; else a list of the pool's ids (its ``id_column`` values as text,
        or the 16-hex-digit hash of the pool row when it has none; empty only when the pool
        holds nothing but the item itself). Call it with the same ``row`` and ``item_id``
        as :meth:`render`: the choice depends on the item id (the seed) and the row's
        ``text_fields`` (similarity and the item's exclusion), is deterministic across
        processes and runs, and is computed once per item (cached, so calling it after
        ``render`` costs a lookup). It reads the pool on first use, raising the same
        one-line :class:`DataError` as ``render`` when the pool is missing or wrong.
        """
        selector = self._selector()
        if selector is None:
            return None
        return [selector.pool.ids[i] for i in selector.choose(row, item_id)]

    def _selector(self) -> Selector | None:
        spec = self.task.demonstrations
        if spec is None:
            return None
        if "selector" not in self._state:
            data_fields = sorted(self.fields - set(self.task.media))
            text_fields = list(spec.text_fields) or data_fields
            pool = load_pool(spec, self.media_root, data_fields, self.task.labels, self.task.aliases, text_fields)
            self._state["selector"] = Selector(spec, pool, text_fields, self.embed)
        selector: Selector = self._state["selector"]
        return selector

    def _marker(self, name: Any) -> str:
        if name not in self.task.media:
            declared = ", ".join(sorted(self.task.media)) or "none"
            raise TemplateError(f"template {self.task.source}: media({name!r}) names no declared media field "
                                f"(declared: {declared})",
                                fix=f"declare it in the front matter: media: {{{name}: {{kind: audio}}}}")
        return MARK.format(f"{self.token}:{name}")

    def _parts(self, text: str, row: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
        """The user message as content parts: text between the media, in the template's order."""
        # only this prompt's markers (a random token per compiled prompt): the same text in a data value stays text
        pieces = re.split(MARK_PATTERN.replace("media:", f"media:{self.token}:"), text)
        placed = set(pieces[1::2])
        missing = sorted(set(self.task.media) - placed)
        if missing:
            raise TemplateError(f"template {self.task.source}: media field {missing[0]!r} is declared but never "
                                "placed in the body", fix=f'put {{{{ media("{missing[0]}") }}}} where it belongs')
        root = self.media_root if self.media_root is not None else Path.cwd()
        parts: list[dict[str, Any]] = []
        for n, piece in enumerate(pieces):
            if n % 2 and piece in self.task.media:
                parts.append(content_part(piece, self.task.media[piece], row[piece], root, where))
            elif n % 2:  # a marker-like text that came from the data, not from media()
                parts.append({"type": "text", "text": MARK.format(piece)})
            elif piece.strip():
                parts.append({"type": "text", "text": piece.strip()})
        return parts


def _no_media(name: Any) -> str:
    raise TemplateError(f"media({name!r}) is used in the system message; media go in the body only",
                        fix="move the media(...) call into the template body")


def compile_prompt(task: Task, media_root: Path | None = None, embed: Embed | None = None) -> Prompt:
    """Compile the system and user templates of ``task``; syntax errors name the line.
    ``media_root``: the folder relative media paths and the demonstrations pool are read
    from (default: the working one). ``embed``: texts to vectors, for demonstrations
    ``select: similar`` by embeddings (``providers.embeddings.embedder``); without it,
    similarity is lexical."""
    env = _environment()
    fields: set[str] = set()
    used: set[str] = set()
    compiled: list[jinja2.Template | None] = []
    for part, text in (("system", task.system), ("body", task.template)):
        if text is None:
            compiled.append(None)
            continue
        try:
            ast = env.parse(text)
            fields |= meta.find_undeclared_variables(ast)
            used |= meta.find_undeclared_variables(ast)
            compiled.append(env.from_string(text))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{task.source} ({part} line {exc.lineno}): Jinja syntax error: {exc.message}",
                                fix="correct the template syntax") from None
    user = compiled[1]
    assert user is not None
    if task.demonstrations is not None and "demonstrations" not in used:
        raise TemplateError(f"template {task.source}: demonstrations are declared but the template never shows them",
                            fix="loop over them in the body: {% for demo in demonstrations %}...{{ demo.label }}"
                                "{% endfor %}")
    return Prompt(task=task, system=compiled[0], user=user,
                  fields=frozenset((fields | set(task.media)) - RESERVED_VARIABLES), media_root=media_root,
                  embed=embed)


def prompt_hash(messages: Messages, response_format: Mapping[str, Any] | None) -> str:
    """sha256 of what exactly is asked: the messages and the answer schema."""
    payload = json.dumps({"messages": messages, "response_format": response_format},
                         sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


_MISSING = object()

__all__ = ["Messages", "Prompt", "compile_prompt", "prompt_hash"]
