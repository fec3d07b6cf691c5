"""What media cost: real EmoDB clips rendered by the built-in task, priced by pricing.media_cost."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import litellm
import pytest
import soundfile

from llm_annotator.core.models import ModelSpec
from llm_annotator.core.prompts import compile_prompt
from llm_annotator.core.task import load_task, parse_task_text
from llm_annotator.providers.pricing import MediaCost, count_tokens, media_cost, text_messages

CLIPS = ["03a01Fa.wav", "03a01Nc.wav", "03a01Wa.wav"]
OPENAI_AUDIO = "gpt-4o-audio-preview-2024-12-17"  # the dated name LiteLLM's local table holds
GEMINI = "gemini/gemini-2.5-flash"


@pytest.fixture
def emodb(shared_data: Path) -> Path:
    return shared_data / "emodb" / "wav"


def rendered(folder: Path, clip: str) -> list[dict]:
    """The messages annotate sends for one row of the built-in ``emotion_audio_only`` task."""
    return compile_prompt(load_task("emotion_audio_only"), folder).render({"clip": clip}, where="t.csv row 1")


@pytest.mark.shared_data
@pytest.mark.parametrize("clip", CLIPS)
def test_an_openai_audio_model_pays_10_tokens_a_second_at_the_tables_audio_price(emodb: Path, clip: str):
    cost = media_cost(ModelSpec(model=OPENAI_AUDIO), rendered(emodb, clip))
    seconds = soundfile.info(str(emodb / clip)).duration
    assert cost.audio_seconds == pytest.approx(seconds, abs=1e-4)
    assert cost.audio_tokens == math.ceil(round(seconds * 10, 6)) == 20
    per_token = litellm.model_cost[OPENAI_AUDIO]["input_cost_per_audio_token"]
    assert cost == MediaCost(audio_seconds=cost.audio_seconds, audio_tokens=20, cost_usd=20 * per_token)
    assert cost.cost_usd == pytest.approx(0.0008)  # 20 tokens at $40 per million


@pytest.mark.shared_data
def test_gemini_pays_32_tokens_a_second_and_two_clips_add_up(emodb: Path):
    text = """---
name: two_clips
labels: [a, b]
outputs:
  label: {kind: categorical}
media:
  first: {kind: audio, sample_rate: 16000}
  second: {kind: audio}
---
Same speaker? {{ media("first") }} {{ media("second") }}
"""
    messages = compile_prompt(parse_task_text(text, "t.jinja"), emodb).render(
        {"first": CLIPS[0], "second": CLIPS[1]}, where="t.csv row 1")
    cost = media_cost(ModelSpec(model=GEMINI), messages)
    assert cost.audio_seconds == pytest.approx(4.0, abs=1e-4)
    assert cost.audio_tokens == 2 * 64
    assert cost.cost_usd == pytest.approx(128 * litellm.model_cost[GEMINI]["input_cost_per_audio_token"])
    assert cost.priced


@pytest.mark.shared_data
def test_a_model_without_a_known_rate_is_not_priced_and_says_why(emodb: Path):
    cost = media_cost(ModelSpec(model="openai/qwen2-audio", api_base="http://127.0.0.1:8000/v1", price=(1, 2)),
                      rendered(emodb, CLIPS[0]))
    assert not cost.priced and cost.cost_usd == 0 and cost.audio_tokens == 0
    assert cost.audio_seconds == pytest.approx(2.0, abs=1e-4)
    assert cost.unpriced == ("openai/qwen2-audio: audio is not priced: no known audio tokens per second for "
                             "'openai/qwen2-audio' (see AUDIO_TOKENS_PER_SECOND)",)


@pytest.mark.shared_data
def test_the_callers_price_counts_only_where_the_table_has_no_audio_price(emodb: Path):
    messages = rendered(emodb, CLIPS[0])
    alias = "gpt-4o-audio-preview"  # a known rate, but not in LiteLLM's table
    assert alias not in litellm.model_cost
    bare = media_cost(ModelSpec(model=alias), messages)
    assert not bare.priced and bare.audio_tokens == 20
    assert "no audio or input price for 'gpt-4o-audio-preview'; give the annotator a price" in bare.unpriced[0]
    assert media_cost(ModelSpec(model=alias, price=(2.5, 10)), messages).cost_usd == pytest.approx(20 * 2.5e-6)
    table = litellm.model_cost[OPENAI_AUDIO]["input_cost_per_audio_token"]
    assert media_cost(ModelSpec(model=OPENAI_AUDIO, price=(1, 1)), messages).cost_usd == pytest.approx(20 * table)
    assert media_cost(ModelSpec(model="local/smollm2-135m"), messages).cost_usd == 0


@pytest.mark.shared_data
def test_text_tokens_leave_out_the_base64_of_the_clip(emodb: Path):
    messages = rendered(emodb, CLIPS[0])
    data = messages[-1]["content"][-1]["input_audio"]["data"]
    assert len(data) == 85_392  # 64,044 bytes of 16 kHz WAV
    texts = text_messages(messages)
    assert data[:100] not in str(texts)
    assert texts[-1]["content"].startswith("Listen to the clip")
    without = [messages[0], {**messages[1], "content": messages[1]["content"][:-1]}]
    tokens = count_tokens(OPENAI_AUDIO, messages)
    assert tokens == count_tokens(OPENAI_AUDIO, without) < 200  # the base64 alone is ~58,000 text tokens
    assert tokens > count_tokens(OPENAI_AUDIO, messages[:1])  # the instruction's text is counted


def png(width: int, height: int) -> bytes:
    """A real grey PNG of the given size (no imaging library needed)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


IMAGE_TASK = """---
name: frame
labels: [a, b]
outputs:
  label: {kind: categorical}
media:
  frame: {kind: image}
---
What is shown? {{ media("frame") }}
"""


@pytest.mark.parametrize(("model", "size", "tokens"), [
    ("gpt-4o", (1024, 1024), 765),        # OpenAI's worked example: 4 tiles, 85 + 4 x 170
    ("gpt-4o", (2048, 4096), 1105),       # fitted to 1024 x 2048, then 768 x 1536: 6 tiles
    ("gpt-4o-mini", (300, 200), 2833 + 5667),
    (GEMINI, (300, 200), 258),
    (GEMINI, (1024, 1024), 4 * 258),
])
def test_images_are_counted_by_tiles_read_from_the_file_header(tmp_path: Path, model: str, size, tokens: int):
    (tmp_path / "f.png").write_bytes(png(*size))
    messages = compile_prompt(parse_task_text(IMAGE_TASK, "t.jinja"), tmp_path).render({"frame": "f.png"})
    cost = media_cost(ModelSpec(model=model), messages)
    entry = litellm.model_cost[model]
    per_token = entry.get("input_cost_per_image_token") or entry["input_cost_per_token"]  # null: none
    assert (cost.image_count, cost.image_tokens, cost.priced) == (1, tokens, True)
    assert cost.cost_usd == pytest.approx(tokens * per_token)
    assert count_tokens(model, messages) == count_tokens(model, [{"role": "user", "content": "What is shown?"}])


def test_an_image_url_is_never_fetched_openai_counts_its_most_gemini_does_not_price_it():
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "What is shown?"},
        {"type": "image_url", "image_url": {"url": "https://127.0.0.1:9/never-fetched.png"}}]}]
    assert media_cost(ModelSpec(model="gpt-4o"), messages).image_tokens == 85 + 8 * 170
    low = [{**messages[0], "content": [messages[0]["content"][0],
                                       {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]}]
    assert media_cost(ModelSpec(model="gpt-4o"), low).image_tokens == 85
    gemini = media_cost(ModelSpec(model=GEMINI), messages)
    assert not gemini.priced and gemini.image_count == 1
    assert gemini.unpriced == (f"{GEMINI}: an image is not priced: no known image tokens for {GEMINI!r} at this size",)
