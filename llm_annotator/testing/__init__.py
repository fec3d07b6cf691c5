"""Test doubles that speak real protocols: an OpenAI-compatible server on 127.0.0.1 and
the scripted replies it gives (see :mod:`llm_annotator.testing.server`)."""

from llm_annotator.testing.responders import (
    DROP,
    Reply,
    Responder,
    attempts,
    echoing_responder,
    sampling_responder,
    schema_labels,
    user_text,
)
from llm_annotator.testing.server import FakeOpenAI

__all__ = ["DROP", "FakeOpenAI", "Reply", "Responder", "attempts", "echoing_responder", "sampling_responder",
           "schema_labels", "user_text"]
