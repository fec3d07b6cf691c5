"""What the loopback server (:mod:`llm_annotator.testing.server`) answers: scripted replies and
responders, functions of the request body."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class _Drop:
    """The marker of a field a :class:`Reply` removes from the completion it answers."""

    def __repr__(self) -> str:
        return "DROP"


#: ``Reply(fields={"usage": DROP})``: the completion is sent without that field.
DROP: Any = _Drop()


@dataclass
class Reply:
    """One scripted reply. ``content`` may be a list (one entry per choice).

    ``status``, ``headers`` and ``delay`` shape the HTTP answer; ``body`` replaces it with
    raw bytes (truncated JSON, an HTML page); ``drop`` closes the connection unanswered.
    ``fields`` replaces top-level fields of the completion the server would send
    (``{"usage": None}``, ``{"choices": [...]}``; :data:`DROP` removes one). ``echo`` makes
    the answer an error object whose message repeats the request's URL and headers, the
    Authorization header included, as careless providers and proxies do; with status 200
    it is a 200 whose body is an error.
    """

    content: str | list[str] | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0
    drop: bool = False
    top_logprobs: dict[str, float] | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    echo: bool = False


Responder = Callable[[dict[str, Any]], "str | list[str] | Reply"]


def user_text(request: dict[str, Any]) -> str:
    """The last user message of a chat request."""
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content", "")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


@dataclass(frozen=True)
class MediaPart:
    """One audio or image content part of a request: its decoded bytes, or the URL it names."""

    kind: str                 # "audio" or "image"
    format: str               # "wav", "png", ... ("url" for an image given by URL)
    data: bytes = b""
    url: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data if self.url is None else self.url.encode()).hexdigest()


def request_media(request: dict[str, Any]) -> list[MediaPart]:
    """The media of a chat request, in message order: ``input_audio`` parts (base64 data)
    and ``image_url`` parts (a ``data:`` URL decoded, another URL kept as it is)."""
    found: list[MediaPart] = []
    for message in request.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "input_audio":
                audio = part.get("input_audio") or {}
                found.append(MediaPart("audio", str(audio.get("format", "")), _b64(str(audio.get("data", "")))))
            elif part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url", ""))
                if url.startswith("data:") and ";base64," in url:
                    head, _, data = url.partition(";base64,")
                    found.append(MediaPart("image", head.removeprefix("data:image/"), _b64(data)))
                else:
                    found.append(MediaPart("image", "url", url=url))
    return found


def media_hash(request: dict[str, Any]) -> str:
    """sha256 over the request's media (decoded bytes, or URLs), "" when it has none."""
    parts = request_media(request)
    if not parts:
        return ""
    return hashlib.sha256("".join(p.sha256 for p in parts).encode()).hexdigest()


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a media part's base64 data does not decode") from None


def schema_labels(request: dict[str, Any]) -> list[str]:
    """The enum of labels in a request's JSON schema, if it has one."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "enum" in node and isinstance(node["enum"], list):
                found.extend(str(v) for v in node["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(request.get("response_format"))
    return found


def sampling_responder(labels: list[str], field_path: str = "label") -> Responder:
    """Answers a JSON object with a label drawn from a prompt-seeded distribution.

    The same prompt has the same distribution; each choice of each call draws anew,
    so repeated samples at temperature > 0 differ, as a real model's do.
    """
    counter = {"n": 0}
    lock = threading.Lock()

    def respond(request: dict[str, Any]) -> list[str]:
        seed = int(hashlib.sha256(user_text(request).encode()).hexdigest()[:8], 16)
        weights = [((seed >> (3 * i)) & 7) + 1 for i in range(len(labels))]
        n = int(request.get("n") or 1)
        with lock:
            counter["n"] += 1
            rng = random.Random(seed * 1000003 + counter["n"])
        out = []
        for _ in range(n):
            label = rng.choices(labels, weights=weights)[0]
            obj: Any = label
            for part in reversed(field_path.split(".")):
                obj = {part: obj}
            out.append(json.dumps(obj))
        return out

    return respond


def attempts(*first: str | list[str] | Reply, then: str | list[str] | Reply) -> Responder:
    """Per distinct prompt: the n-th request gets ``first[n]``, later ones ``then``.

    ``attempts(Reply(status=429, headers={"Retry-After": "0.2"}), Reply(status=503), then='{"label": "a"}')``
    fails each prompt twice before answering.
    """
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def respond(request: dict[str, Any]) -> str | list[str] | Reply:
        text = user_text(request)
        with lock:
            seen[text] = seen.get(text, 0) + 1
            attempt = seen[text]
        return first[attempt - 1] if attempt <= len(first) else then

    return respond


def echoing_responder(answer: str, secret: str, item: Callable[[dict[str, Any]], int]) -> Responder:
    """A provider that repeats the request back, each item its own way (``item`` gives a
    request's item number): ``answer``; the URL and headers echoed in a 400, a 500, an
    error object in a 200, a 429 and a 404; and an answer that repeats ``secret``."""
    replies: list[str | Reply] = [
        answer,
        Reply(status=400, echo=True),   # not retried: its message is the vote's error
        Reply(status=500, echo=True),   # retried, then the vote's error
        Reply(status=200, echo=True),   # an error object in a 200
        Reply(status=429, echo=True, headers={"Retry-After": "0"}),
        json.dumps({**json.loads(answer), "note": f"you sent {secret}"}),  # the answer itself repeats it
        Reply(status=404, echo=True),
    ]

    def respond(request: dict[str, Any]) -> str | Reply:
        return replies[item(request) % len(replies)]

    return respond


__all__ = ["DROP", "MediaPart", "Reply", "Responder", "attempts", "echoing_responder", "media_hash",
           "request_media", "sampling_responder", "schema_labels", "user_text"]
