"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks the chat-completions protocol, so LiteLLM reaches it exactly as it reaches a
hosted provider (``openai/NAME`` with ``api_base``). What it answers is scripted by a
*responder*, a function of the request body::

    def respond(request: dict) -> str | list[str] | Reply: ...

    with FakeOpenAI(respond) as server:
        annotate(rows, task="sentiment", models=["openai/fake"], api_base=server.url)

A string is the content of every choice; a list gives one content per choice (and may
hold fewer than ``n``); a :class:`Reply` sets status, headers, delay, a raw body, fields
of the completion or an echo of the request to inject faults (429 with Retry-After, 500,
truncated JSON, dropped connections, impossible usage, shuffled choices, a provider that
repeats the caller's key in its error). ``requests``, ``headers_seen`` and ``paths_seen``
keep what each request sent (``paths_seen`` every POST's path and query); ``calls``
counts chat requests.

It also implements the files and batches endpoints of the Batch API (``POST /v1/files``
multipart upload, ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET
/v1/files/{id}/content``). A batch moves one status further on each retrieve
(validating, in_progress, finalizing, completed) unless ``hold_batches`` is set; when it
completes, every line is answered by the same responder, lines whose reply is not a 200
go to the error file, and the output lines come in reverse order (as a real batch gives
no order). ``expire_batches`` ends batches as ``expired`` with half their lines answered.

``POST /v1/embeddings`` gives each input text a bag-of-words vector (each word, case
folded, counted in one of 256 dimensions chosen by its sha256), as floats or, when
``encoding_format`` is ``base64`` (what the OpenAI SDK asks for), as base64 of float32:
texts sharing words are near, so similarity can be checked. ``embedding_requests`` keeps
each request.
"""

from __future__ import annotations

import base64
import email.message
import email.parser
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llm_annotator.testing.responders import (
    DROP,
    Reply,
    Responder,
    attempts,
    sampling_responder,
    schema_labels,
    user_text,
)


class FakeOpenAI:
    """A threaded HTTP server on 127.0.0.1 that answers ``/v1/chat/completions``."""

    def __init__(self, respond: Responder | None = None, *, latency: float = 0.0,
                 honour_n: bool = True, model_name: str = "fake", slots: int | None = None) -> None:
        self.respond = respond or (lambda request: "neutral")
        self.latency = latency
        # at most ``slots`` completions are worked on at once, the rest wait (a self-hosted
        # server with a fixed number of batch slots)
        self.slots = threading.Semaphore(slots) if slots else None
        self.honour_n = honour_n
        self.model_name = model_name
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.paths_seen: list[str] = []  # the path and query of each POST
        self.embedding_requests: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.hold_batches = False
        self.expire_batches = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        """An embeddings response: a bag-of-words vector per input text."""
        given = request.get("input")
        texts = [given] if isinstance(given, str) else list(given or [])
        with self._lock:
            self.embedding_requests.append(request)
        data = []
        for index, text in enumerate(texts):
            vector: Any = _bag_of_words(str(text))
            if request.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(str(t).split()) for t in texts)
        return {"object": "list", "data": data, "model": request.get("model", self.model_name),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def start(self) -> FakeOpenAI:
        handler = _make_handler(self)
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 1024
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    # -- protocol ------------------------------------------------------------------
    def completion(self, request: dict[str, Any], contents: list[str],
                   top: dict[str, float] | None) -> dict[str, Any]:
        n = int(request.get("n") or 1)
        if self.honour_n and len(contents) == 1 and n > 1:
            contents = contents * n
        if not self.honour_n:
            contents = contents[:1]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
        choices = []
        for index, content in enumerate(contents):
            choice: dict[str, Any] = {"index": index, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}
            if request.get("logprobs"):
                choice["logprobs"] = {"content": _token_logprobs(content, top, int(request.get("top_logprobs") or 5))}
            choices.append(choice)
        completion_tokens = sum(max(1, len(c.split())) for c in contents)
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
            "created": int(time.time()), "model": request.get("model", self.model_name),
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


    # -- batch API -------------------------------------------------------------------
    def add_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        with self._lock:
            file_id = f"file-{next(self._ids)}"
            record = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                      "filename": filename, "purpose": purpose, "status": "processed"}
            self.files[file_id] = {**record, "content": content}
        return record

    def create_batch(self, request: dict[str, Any]) -> dict[str, Any] | None:
        source = self.files.get(str(request.get("input_file_id")))
        if source is None:
            return None
        lines = [line for line in source["content"].decode().splitlines() if line.strip()]
        with self._lock:
            batch_id = f"batch_{next(self._ids)}"
        batch = {"id": batch_id, "object": "batch", "endpoint": request.get("endpoint"), "errors": None,
                 "input_file_id": source["id"], "completion_window": request.get("completion_window", "24h"),
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "metadata": request.get("metadata"),
                 "request_counts": {"total": len(lines), "completed": 0, "failed": 0}}
        self.batches[batch_id] = batch
        return batch

    def retrieve_batch(self, batch_id: str) -> dict[str, Any] | None:
        batch = self.batches.get(batch_id)
        if batch is None:
            return None
        order = ["validating", "in_progress", "finalizing", "completed"]
        if batch["status"] in order[:-1] and not (self.hold_batches and batch["status"] == "in_progress"):
            batch["status"] = order[order.index(batch["status"]) + 1]
            if batch["status"] == "completed":
                self._run_batch(batch)
        return batch

    def _run_batch(self, batch: dict[str, Any]) -> None:
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]]["content"].decode().splitlines()
                 if line.strip()]
        done, failed = [], []
        for number, line in enumerate(lines):
            entry: dict[str, Any] = {"id": f"batch_req_{number}", "custom_id": line["custom_id"], "error": None}
            if self.expire_batches and number >= len(lines) // 2:
                entry["response"] = None
                entry["error"] = {"code": "batch_expired", "message": "not done within the completion window"}
                failed.append(entry)
                continue
            body = line["body"]
            with self._lock:
                self.requests.append(body)
            reply = self.respond(body)
            if not isinstance(reply, Reply):
                reply = Reply(content=reply)
            if reply.status != 200:
                entry["response"] = {"status_code": reply.status, "request_id": f"req_{number}",
                                     "body": {"error": {"message": f"scripted status {reply.status}"}}}
                failed.append(entry)
                continue
            contents = reply.content if isinstance(reply.content, list) else [reply.content or ""]
            entry["response"] = {"status_code": 200, "request_id": f"req_{number}",
                                 "body": self.completion(body, contents, reply.top_logprobs)}
            done.append(entry)
        if self.expire_batches:
            batch["status"] = "expired"
        if done:
            text = "".join(json.dumps(e) + "\n" for e in reversed(done))
            batch["output_file_id"] = self.add_file(text.encode(), "output.jsonl", "batch_output")["id"]
        if failed:
            text = "".join(json.dumps(e) + "\n" for e in reversed(failed))
            batch["error_file_id"] = self.add_file(text.encode(), "errors.jsonl", "batch_output")["id"]
        batch["request_counts"] = {"total": len(lines), "completed": len(done), "failed": len(failed)}


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.get_payload() if message.is_multipart() else []:
        if isinstance(part, email.message.Message):
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def _token_logprobs(content: str, top: dict[str, float] | None, k: int) -> list[dict[str, Any]]:
    """Split ``content`` into word-ish tokens; the first token of a known label gets ``top``."""
    tokens: list[str] = []
    current = ""
    for ch in content:
        if ch.isalnum() or ch == "_":
            current += ch
        else:
            if current:
                tokens.append(current)
                current = ""
            tokens.append(ch)
    if current:
        tokens.append(current)
    entries = []
    for token in tokens:
        if top and token in top:
            alternatives = sorted(top.items(), key=lambda kv: -kv[1])[:k]
            entries.append({"token": token, "logprob": math.log(top[token]),
                            "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alternatives]})
        else:
            entries.append({"token": token, "logprob": 0.0, "top_logprobs": [{"token": token, "logprob": 0.0}]})
    return entries


class _QuietServer(ThreadingHTTPServer):
    """Clients that drop connections (killed runs, timeouts) are expected here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


def _make_handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
                     f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
            lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

        def _json(self, value: dict[str, Any] | None) -> None:
            if value is None:
                self._send(404, b'{"error": {"message": "no such object", "type": "invalid_request_error"}}')
            else:
                self._send(200, json.dumps(value).encode())

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            parts = path.split("/")
            if path.endswith("/models"):
                body = {"object": "list", "data": [{"id": server.model_name, "object": "model"}]}
                self._send(200, json.dumps(body).encode())
            elif path.endswith("/batches"):
                listing = sorted(server.batches.values(), key=lambda b: b["created_at"], reverse=True)
                self._send(200, json.dumps({"object": "list", "data": listing, "has_more": False}).encode())
            elif len(parts) >= 2 and parts[-2] == "batches":
                self._json(server.retrieve_batch(parts[-1]))
            elif len(parts) >= 3 and parts[-1] == "content" and parts[-3] == "files":
                found = server.files.get(parts[-2])
                if found is None:
                    self._json(None)
                else:
                    self._send(200, found["content"], content_type="application/octet-stream")
            else:
                self._send(404, b'{"error": {"message": "not found"}}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            path = self.path.split("?")[0].rstrip("/")
            if not path.endswith("/chat/completions"):
                with server._lock:
                    server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                    server.paths_seen.append(self.path)
            if path.endswith("/files"):
                fields = _multipart(self.headers.get("Content-Type", ""), raw)
                filename, content = fields.get("file", (None, b""))
                purpose = fields.get("purpose", (None, b""))[1].decode()
                self._json(server.add_file(content, filename or "upload.jsonl", purpose))
                return
            if path.endswith("/batches"):
                try:
                    self._json(server.create_batch(json.loads(raw)))
                except json.JSONDecodeError:
                    self._send(400, b'{"error": {"message": "bad json"}}')
                return
            if path.endswith("/embeddings"):
                try:
                    self._json(server.embeddings(json.loads(raw)))
                except (json.JSONDecodeError, AttributeError, TypeError):
                    self._send(400, b'{"error": {"message": "bad embeddings request"}}')
                return
            if not path.endswith("/chat/completions"):  # the path repeated, as web frameworks' 404s do
                self._send(404, json.dumps({"error": {"message": f"no route for POST {self.path}"}}).encode())
                return
            try:
                request = json.loads(raw)
            except json.JSONDecodeError:
                self._send(400, b'{"error": {"message": "bad json"}}')
                return
            with server._lock:
                server.requests.append(request)
                server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                server.paths_seen.append(self.path)
            reply = server.respond(request)
            if not isinstance(reply, Reply):
                reply = Reply(content=reply)
            delay = server.latency + reply.delay
            if server.slots is not None:
                with server.slots:
                    time.sleep(delay)
            elif delay:
                time.sleep(delay)
            if reply.drop:
                self.close_connection = True
                self.connection.close()
                return
            if reply.body is not None:
                self._send(reply.status, reply.body, reply.headers,
                           reply.headers.get("Content-Type", "application/json"))
                return
            if reply.echo:  # a provider that repeats the request in its error message
                said = "; ".join(f"{key}: {value}" for key, value in self.headers.items())
                message = f"cannot serve POST {self.path} (host {self.headers.get('Host')}; headers {said})"
                echoed = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
                self._send(reply.status, json.dumps(echoed).encode(), reply.headers)
                return
            if reply.status != 200:
                body = {"error": {"message": f"scripted status {reply.status}", "type": "server_error",
                                  "code": reply.status}}
                self._send(reply.status, json.dumps(body).encode(), reply.headers)
                return
            contents = reply.content if isinstance(reply.content, list) else [reply.content or ""]
            body = server.completion(request, contents, reply.top_logprobs)
            for key, value in reply.fields.items():
                if value is DROP:
                    body.pop(key, None)
                else:
                    body[key] = value
            self._send(200, json.dumps(body).encode(), reply.headers)

    return Handler


def _bag_of_words(text: str, size: int = 256) -> list[float]:
    vector = [0.0] * size
    for word in re.findall(r"\w+", text.casefold()):
        vector[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % size] += 1.0
    return vector


__all__ = ["DROP", "FakeOpenAI", "Reply", "Responder", "attempts", "sampling_responder", "schema_labels", "user_text"]
