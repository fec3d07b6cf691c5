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

A task with several outputs (:mod:`llm_annotator.core.outputs`) reads each from its own
field of the JSON answer, with its own validity: a missing or invalid field makes that
output invalid, never the others. A numeric output takes a JSON number (or a text that is
one) inside its range, whole on an integer scale, else ``out_of_range:<value>``; a
multi-label output takes a JSON array of labels (or one text of labels separated by
commas), every one of which must be a label, and may be empty.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_annotator.core.errors import ErrorKind
from llm_annotator.core.outputs import OutputSpec
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
    data: Any = None          # a numeric output's number, a multi-label output's labels (tuple)


def normalise(text: str) -> str:
    return " ".join(text.strip(_STRIP).casefold().split())


def _match(text: str, task: Task | OutputSpec) -> str | None:
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


def _text_of(value: Any) -> str:
    """A non-text explanation as its whole JSON text."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return str(value)


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


def parse_outputs(content: str | None, task: Task) -> dict[str, Parsed]:
    """Every output of ``task`` read from one answer, each with its own validity."""
    specs = task.output_specs
    out = {specs[0].name: parse_answer(content, task)}
    if len(specs) == 1:
        return out
    if content is None or not isinstance(content, str) or not content.strip():
        return {spec.name: out[specs[0].name] for spec in specs}  # empty or not text: the same for all
    obj = _json_object(content) if "{" in content else None
    for spec in specs[1:]:
        if not isinstance(obj, Mapping):
            out[spec.name] = Parsed(None, ErrorKind.UNPARSEABLE.value)
            continue
        value = _field(obj, spec.field)
        out[spec.name] = (Parsed(None, f"{ErrorKind.MISSING_FIELD.value}:{spec.field}") if value is _MISSING
                          else read_value(value, spec))
    return out


Structure = tuple[dict[str, dict[str, Any]] | None, dict[str, str] | None]


def read_answer(content: str | None, task: Task, *, cells: bool = False) -> tuple[
        Parsed, dict[str, dict[str, Any]] | None, dict[str, str] | None]:
    """Everything a vote takes from an answer, each output read once: the primary output's
    :class:`Parsed`, and for a structured task each output's ``{"label", "value",
    "error"}`` (None keys left out) and the explanations (None for a plain task).
    ``cells``: the outputs even for a plain task (an annotator that answers part of a job's
    outputs says which)."""
    if not task.structured and not cells:
        return parse_answer(content, task), None, None
    parsed = parse_outputs(content, task)
    outputs = {}
    for name, one in parsed.items():
        cell = {"label": one.label, "value": list(one.data) if isinstance(one.data, tuple) else one.data,
                "error": one.error}
        outputs[name] = {k: v for k, v in cell.items() if v is not None}
    return parsed[task.primary.name], outputs, explanations(content, task)


def structure(content: str | None, task: Task) -> Structure:
    """What a vote of a structured task keeps beside its primary label (:func:`read_answer`)."""
    _, outputs, explained = read_answer(content, task)
    return outputs, explained


def explanations(content: str | None, task: Task) -> dict[str, str] | None:
    """The free-text fields a task keeps (``explanations``) from a JSON answer; None when
    there are none. Missing fields are left out: they are never required."""
    if not task.explanations or not content or "{" not in content:
        return None
    obj = _json_object(content)
    if not isinstance(obj, Mapping):
        return None
    found = {}
    for path in task.explanations:
        value = _field(obj, path)
        if value is not _MISSING and value is not None:
            found[path] = value if isinstance(value, str) else _text_of(value)
    return found or None


def read_value(value: Any, spec: OutputSpec) -> Parsed:
    """One output's value from its JSON field, by the output's kind."""
    if spec.kind == "numeric":
        return _number(value, spec)
    if spec.kind == "multi_label":
        return _members(value, spec)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # an ordinal scale of numbers: 3 for "3"
    if not isinstance(value, str):
        return Parsed(None, f"{ErrorKind.OUT_OF_LABEL_SET.value}:{_short(value)}")
    label = _match(value, spec)
    if label is None:
        return Parsed(None, f"{ErrorKind.OUT_OF_LABEL_SET.value}:{value.strip()[:60]}", value)
    return Parsed(label, None, value)


def _number(value: Any, spec: OutputSpec) -> Parsed:
    text = value.strip() if isinstance(value, str) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return Parsed(None, f"{ErrorKind.OUT_OF_RANGE.value}:{_short(value)}")
    try:
        number = float(text.strip(_STRIP) if text is not None else value)
    except (ValueError, OverflowError):
        return Parsed(None, f"{ErrorKind.OUT_OF_RANGE.value}:{(text or '')[:60]}", text)
    assert spec.range is not None
    low, high = spec.range
    shown = text if text is not None else _short(value)
    if not math.isfinite(number) or not low <= number <= high or (spec.integer and number != int(number)):
        return Parsed(None, f"{ErrorKind.OUT_OF_RANGE.value}:{shown[:60]}", shown)
    data = int(number) if spec.integer else number
    return Parsed(spec.bin_of(number), None, shown, data)


def _members(value: Any, spec: OutputSpec) -> Parsed:
    if isinstance(value, str) and value.strip().startswith("["):  # a JSON list written as text
        decoded = _decode(value.strip())
        value = decoded if isinstance(decoded, list) else value
    if isinstance(value, str):
        parts = [part for part in re.split(r"[,;|]", value) if part.strip()]
        if not parts and value.strip():  # separators and nothing else name no set
            return Parsed(None, f"{ErrorKind.OUT_OF_LABEL_SET.value}:{value.strip()[:60]}", value)
        value = parts
    if not isinstance(value, list):
        return Parsed(None, f"{ErrorKind.OUT_OF_LABEL_SET.value}:{_short(value)}")
    chosen = set()
    for member in value:
        label = _match(member, spec) if isinstance(member, str) else None
        if label is None:
            shown = member.strip()[:60] if isinstance(member, str) else _short(member)
            return Parsed(None, f"{ErrorKind.OUT_OF_LABEL_SET.value}:{shown}", _short(value))
        chosen.add(label)
    members = tuple(label for label in spec.labels if label in chosen)
    return Parsed("|".join(members), None, _short(value), members)


def parse_answer(content: str | None, task: Task) -> Parsed:
    """Read the primary output's label from a model's answer, or say why there is none."""
    if content is None or (isinstance(content, str) and not content.strip()):
        return Parsed(None, ErrorKind.EMPTY.value)
    if not isinstance(content, str):
        return Parsed(None, ErrorKind.UNPARSEABLE.value)
    primary = task.primary
    if primary.kind in ("numeric", "multi_label"):
        return _structured_primary(content, primary)
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


def _structured_primary(content: str, spec: OutputSpec) -> Parsed:
    """A numeric or multi-label primary output: from its JSON field, else the bare first line."""
    obj = _json_object(content) if "{" in content else None
    if isinstance(obj, Mapping):
        value = _field(obj, spec.field)
        if value is _MISSING:
            return Parsed(None, f"{ErrorKind.MISSING_FIELD.value}:{spec.field}")
        return read_value(value, spec)
    line = _PREFIX.sub("", content.strip().splitlines()[0]).strip()
    if spec.kind == "numeric" and not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", line.strip(_STRIP)):
        return Parsed(None, ErrorKind.UNPARSEABLE.value)
    return read_value(line, spec)


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

__all__ = ["Parsed", "distribution_from_logprobs", "explanations", "normalise", "parse_answer", "parse_outputs",
           "read_answer", "read_value", "structure"]
