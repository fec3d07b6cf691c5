"""A model's answer to a label, or to an invalid vote with its reason.

Order of attempts: a JSON object (also inside a ```json fence or surrounded by prose)
whose output field holds the label; else the first line of the bare answer, as written
and without a leading "Answer:"/"Emotion:". A text is matched to the labels, then to
the declared aliases, first exactly, then ignoring case, then ignoring case, surrounding
punctuation and quotes; a tolerant match that fits two labels (``a`` and ``a.``) or none
but punctuation fits none. Anything else is invalid and keeps its reason: ``empty``,
``unparseable``, ``missing_field:<path>``, ``out_of_label_set:<value>``. Nothing is
ever mapped to the nearest label, and no answer text raises: JSON too deep or with
numbers too long to read is simply not JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_annotator.core.errors import ErrorKind
from llm_annotator.core.task import Task

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:answer|label|emotion|sentiment|class|category)\s*(?:is)?\s*[:=\-]?\s*",
                     re.IGNORECASE)
_STRIP = " \t\r\n.,;:!?\"'`*()[]{}<>"


@dataclass(frozen=True)
class Parsed:
    label: str | None
    error: str | None
    value: str | None = None  # the text the label was read from, as written by the model


def normalise(text: str) -> str:
    return " ".join(text.strip(_STRIP).casefold().split())


def _match(text: str, task: Task) -> str | None:
    """The label ``text`` names, or None: labels before aliases, exact before tolerant;
    a stage where two labels fit is ambiguous and matches nothing."""
    stripped = text.strip()
    for key in (_same, str.casefold, normalise):
        wanted = key(stripped)
        if not wanted:
            return None
        for names in (((label, label) for label in task.labels), task.aliases.items()):
            found = {target for name, target in names if key(name.strip()) == wanted}
            if len(found) == 1:
                return found.pop()
            if found:
                return None
    return None


def _same(text: str) -> str:
    return text


def _decode(text: str) -> Any:
    """The JSON value at the start of ``text``, or _MISSING (also for JSON nested deeper
    than the decoder recurses and integers longer than Python converts)."""
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except (ValueError, RecursionError):
        return _MISSING


def _json_object(text: str) -> Any:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        candidate = candidate.strip()
        start = candidate.find("{")
        if start < 0:
            continue
        value = _decode(candidate[start:])
        if value is _MISSING:
            end = candidate.rfind("}")
            if end <= start:
                continue
            value = _decode(candidate[start:end + 1])
            if value is _MISSING:
                continue
        return value
    return None


def _short(value: Any) -> str:
    """A non-text answer value as the error names it: its JSON, at most 60 characters."""
    try:
        return json.dumps(value)[:60]
    except (ValueError, TypeError, RecursionError):
        return type(value).__name__


def _field(obj: Any, path: str) -> Any:
    node = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return _MISSING
        # tolerate case differences in keys ("Emotion" for "emotion")
        if part in node:
            node = node[part]
        else:
            matches = [k for k in node if isinstance(k, str) and k.casefold() == part.casefold()]
            if not matches:
                return _MISSING
            node = node[matches[0]]
    return node


def parse_answer(content: str | None, task: Task) -> Parsed:
    """Read the label from a model's answer, or say why there is none."""
    if content is None or (isinstance(content, str) and not content.strip()):
        return Parsed(None, ErrorKind.EMPTY.value)
    if not isinstance(content, str):
        return Parsed(None, ErrorKind.UNPARSEABLE.value)
    obj = _json_object(content) if "{" in content else None
    if isinstance(obj, Mapping):
        paths = [task.output] if task.output else []
        paths += [p for p in ("label", "answer") if p not in paths]
        for path in paths:
            value = _field(obj, path)
            if value is _MISSING:
                continue
            if not isinstance(value, str):
                return Parsed(None, f"{ErrorKind.OUT_OF_LABEL_SET.value}:{_short(value)}")
            label = _match(value, task)
            if label is None:
                return Parsed(None, f"{ErrorKind.OUT_OF_LABEL_SET.value}:{value.strip()[:60]}", value)
            return Parsed(label, None, value)
        return Parsed(None, f"{ErrorKind.MISSING_FIELD.value}:{task.output or 'label'}")
    line = content.strip().splitlines()[0]
    text = _PREFIX.sub("", line)
    for candidate in (line, text):
        label = _match(candidate, task)
        if label is not None:
            return Parsed(label, None, candidate.strip(_STRIP) or candidate.strip())
    if task.output is None and len(normalise(text).split()) <= 3:
        return Parsed(None, f"{ErrorKind.OUT_OF_LABEL_SET.value}:{normalise(text)[:60]}", text.strip(_STRIP))
    return Parsed(None, ErrorKind.UNPARSEABLE.value)


def distribution_from_logprobs(content: str, tokens: Sequence[Mapping[str, Any]] | None,
                               parsed: Parsed, task: Task) -> dict[str, float] | None:
    """A label distribution from the top log-probabilities at the label's first token.

    The token whose span starts where the label value starts in ``content`` is found;
    each alternative token there is credited to the labels it begins (a token matching
    several labels' starts is split between them); the mass is renormalised over the
    label set. Returns None when the position or any label mass cannot be found.
    This is a first-token approximation, exact when labels differ in their first token.
    """
    if not tokens or parsed.value is None or parsed.label is None:
        return None
    at = _value_position(content, parsed.value, task.output)
    if at < 0:
        return None
    offset = 0
    entry = None
    for token in tokens:
        text = str(token.get("token", ""))
        if offset <= at < offset + max(len(text), 1) or (offset >= at and text.strip()):
            entry = token
            break
        offset += len(text)
    if entry is None:
        return None
    alternatives = entry.get("top_logprobs") or [{"token": entry.get("token"), "logprob": entry.get("logprob")}]
    names = {label: normalise(label) for label in task.labels}
    mass = dict.fromkeys(task.labels, 0.0)
    for alt in alternatives:
        piece = normalise(str(alt.get("token", "")))
        logprob = alt.get("logprob")
        if not piece or logprob is None:
            continue
        starts = [label for label, name in names.items() if name.startswith(piece)]
        for label in starts:
            mass[label] += math.exp(float(logprob)) / len(starts)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {label: value / total for label, value in mass.items()}


def _value_position(content: str, value: str, output: str | None) -> int:
    """Where the label value starts: after its JSON key when there is one."""
    if output:
        key = re.escape(output.split(".")[-1])
        for match in re.finditer(rf'"{key}"\s*:\s*"', content, re.IGNORECASE):
            if content.startswith(value, match.end()):
                return match.end()
    return content.find(value)


_MISSING = object()

__all__ = ["Parsed", "distribution_from_logprobs", "normalise", "parse_answer"]
