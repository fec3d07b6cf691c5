"""Test doubles that speak real protocols: an OpenAI-compatible server on 127.0.0.1 and
the scripted replies it gives (see :mod:`llm_annotator.testing.server`)."""

from llm_annotator.testing.responders import (
    DROP,
    MediaPart,
    Reply,
    Responder,
    attempts,
    echoing_responder,
    media_hash,
    request_media,
    sampling_responder,
    schema_labels,
    user_text,
)
from llm_annotator.testing.server import FakeOpenAI

__all__ = ["DROP", "FakeOpenAI", "MediaPart", "Reply", "Responder", "attempts", "echoing_responder", "media_hash",
           "request_media", "sampling_responder", "schema_labels", "user_text"]
