"""What an answer answers, and what a job is: the two identities, each defined here once.

**Request fingerprint** — the cache key and the identity a vote is resumed by::

    "v2:" + sha256(annotator digest | prompt hash | sample index)

where the *annotator digest* is the sha256 of the canonical JSON of everything that
can change an answer besides the prompt (:class:`AnnotatorIdentity`): the resolved
endpoint (model, API base from the argument, the environment or a router's
deployments, the model file's sha256 for embedded models; never a credential), and
every decoding parameter sent (temperature, max_tokens, top_p, seed and other extra
parameters, the answer-schema policy, the log-probability policy, the embedded
model's scoring mode). The *prompt hash* covers the rendered messages and the answer
schema. A vote whose fingerprint differs from what the job would ask now is stale:
counted, asked again, never reused.

``n`` (how many samples one request carries) is deliberately not part of it: sample
``s`` is the same draw whether it came in a request with ``n = 3`` or alone, and a
resumed job asks its missing samples in whatever grouping is left.

**Job identity** — which job a run directory holds (:class:`JobIdentity`): the data
(item ids and prompt hashes, as digests), the task and its template hash, the
annotators by name (with the task and template hash of each that has its own), the samples per item and the shard. A different job into the same
directory is refused; the same job with changed decoding parameters or endpoints
re-asks exactly the votes whose fingerprint changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

KEY_VERSION = "v2"
JOB_VERSION = "job-v1"

#: Words of a parameter or variable name that mark its value as a credential.
_SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "credential", "credentials",
                           "auth", "authorization", "sig", "signature", "code"})


def canonical(payload: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, anything unknown as its string."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(payload: Any) -> str:
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


def is_secret_name(name: str) -> bool:
    """A parameter or variable name that holds a credential (api_key, token, secret ...)."""
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", name.lower()))


def public_url(url: str | None) -> str | None:
    """An API base without credentials: no user-info, no secret query values, no fragment.

    >>> public_url("https://user:pw@host:8080/v1?key=abc&api-version=2024")
    'https://host:8080/v1?api-version=2024'
    """
    if not url:
        return None
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a number: the text after the host's colon is dropped
        port = None
    netloc = f"{host}:{port}" if port else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not is_secret_name(k)])
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), query, ""))


def url_secrets(url: str | None) -> list[str]:
    """The credentials written into a URL: its password (and ``user:password``), a user name
    that stands alone (``https://KEY@host``), the values of secret query parameters.

    >>> url_secrets("https://me:pw-123@host/v1?api-key=abc&v=1")
    ['pw-123', 'me:pw-123', 'abc']
    """
    if not url or ("@" not in url and "?" not in url):
        return []
    parts = urlsplit(url.strip())
    found: list[str] = []
    if parts.password:
        found += [parts.password, f"{parts.username or ''}:{parts.password}"]
    elif parts.username:
        found.append(parts.username)
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_name(k) and v]
    return found


def secret_forms(secret: str) -> list[str]:
    """The forms in which ``secret`` can come back in a message: as it is, percent-encoded
    (a URL), and Base64-encoded (an HTTP Basic ``Authorization`` header of ``user:password``).

    >>> secret_forms("a b")
    ['a b', 'a%20b', 'a+b', 'YSBi']
    """
    forms = [secret, quote(secret, safe=""), quote_plus(secret, safe=""),
             base64.b64encode(secret.encode("utf-8", "surrogatepass")).decode("ascii")]
    return list(dict.fromkeys(f for f in forms if f))


class AnnotatorIdentity(BaseModel):
    """Everything besides the prompt that can change one annotator's answers."""

    model_config = ConfigDict(frozen=True)

    name: str
    model: str
    api_base: str | None                  # resolved, public form (no credentials)
    deployments: tuple[str, ...] = ()     # a router's deployments: model @ public api base
    model_file: str | None = None         # sha256 of an embedded model's file
    params: dict[str, Any]                # decoding parameters sent (no credentials)

    @property
    def digest(self) -> str:
        payload = self.model_dump(exclude={"name"})
        return digest(payload)

    def fingerprint(self, prompt_hash: str, sample: int) -> str:
        return request_fingerprint(self.digest, prompt_hash, sample)


def request_fingerprint(annotator_digest: str, prompt_hash: str, sample: int) -> str:
    """The identity of one answer: what was asked, of which endpoint, how, which draw."""
    text = f"{annotator_digest}|{prompt_hash}|{sample}"
    return f"{KEY_VERSION}:{hashlib.sha256(text.encode()).hexdigest()}"


class DataDigest:
    """The data part of a job's identity, built row by row (a corpus may stream)."""

    def __init__(self) -> None:
        self._ids = hashlib.sha256()
        self._prompts = hashlib.sha256()
        self.n_items = 0

    def add(self, item_id: str, prompt_hash: str) -> None:
        self._ids.update(item_id.encode("utf-8", "surrogatepass") + b"\x00")
        self._prompts.update(prompt_hash.encode() + b"\x00")
        self.n_items += 1

    def add_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        for item_id, phash in pairs:
            self.add(item_id, phash)

    def finish(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "ids": self._ids.hexdigest()[:32], "prompts": self._prompts.hexdigest()[:32]}


class JobIdentity(BaseModel):
    """Which job a run directory holds (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    source: str
    data: dict[str, Any]                 # n_items, ids digest, prompts digest
    task: str
    template_hash: str
    labels: tuple[str, ...]
    annotators: tuple[str, ...]
    samples: int
    shard: tuple[int, int] | None = None
    #: annotators with a task of their own: name -> "task:template hash" (None: every
    #: annotator answers the job's task; then left out, so such a job's identity is as it was)
    annotator_tasks: dict[str, str] | None = None

    @property
    def fingerprint(self) -> str:
        dropped = {"source"} | ({"annotator_tasks"} if self.annotator_tasks is None else set())
        return f"{JOB_VERSION}:{digest(self.model_dump(exclude=dropped))[:32]}"

    def describe(self) -> str:
        shard = f", shard {self.shard[0]}/{self.shard[1]}" if self.shard else ""
        return (f"{self.data.get('n_items')} items of {self.source}, task {self.task!r}, "
                f"annotators {', '.join(self.annotators)}, {self.samples} sample(s){shard}")

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """The fields in which a recorded job (its model_dump) differs from this one."""
        mine = self.model_dump(mode="json")
        out = []
        for key, value in mine.items():
            if key == "source":
                continue
            theirs = other.get(key)
            if key == "data" and isinstance(theirs, dict):
                for part in ("n_items", "ids", "prompts"):
                    if value.get(part) != theirs.get(part):
                        out.append({"n_items": "item count", "ids": "item ids", "prompts": "prompts"}[part])
            elif (list(theirs) if isinstance(theirs, list | tuple) else theirs) != \
                    (list(value) if isinstance(value, list | tuple) else value):
                out.append(key)
        return out


__all__ = ["KEY_VERSION", "AnnotatorIdentity", "DataDigest", "JobIdentity", "canonical", "digest",
           "is_secret_name", "public_url", "request_fingerprint", "secret_forms", "url_secrets"]
