"""What a request costs: LiteLLM's price map, the caller's own price, and token counts.

``price_of(spec, ...)`` is the one price of an annotator's tokens: the annotator's
``price`` (US dollars per million input and output tokens) when the caller gave one,
else LiteLLM's price map for the model (the deployment's model behind a router), else
nothing (:func:`priced` is False). Embedded models cost nothing. When a provider
reports no usage, or usage that cannot be true (negative, or no prompt tokens for a
prompt), the tokens are counted with the model's tokenizer instead.

Media parts of a prompt (``input_audio`` and ``image_url`` content parts, built by
:mod:`llm_annotator.core.media`) are not text: :func:`count_tokens` counts the text parts
only, and :func:`media_cost` gives the audio and image input of one request and its price.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_annotator.core.models import ModelSpec
from llm_annotator.providers.client import litellm


def count_tokens(model: str, messages: Sequence[Mapping[str, Any]]) -> int:
    """Text tokens of the messages under the model's tokenizer (a characters/4 count as fallback).

    Media parts are left out (:func:`text_messages`): their price is :func:`media_cost`'s.
    """
    lm = litellm()  # an import that failed is told as itself, not hidden by the fallback
    texts = text_messages(messages)
    try:
        return int(lm.token_counter(model=model, messages=texts))
    except Exception:
        return sum(len(m["content"]) // 4 + 4 for m in texts)


def text_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages with their text only: a list of content parts becomes its text parts,
    joined by newlines; audio and image parts (kilobytes of base64) are dropped."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(str(part.get("text", "")) for part in content
                                if isinstance(part, Mapping) and part.get("type") == "text")
        out.append({**message, "content": content if isinstance(content, str) else ""})
    return out


@functools.cache
def _unit_prices(model: str) -> tuple[float, float] | None:
    """Dollars per prompt and per completion token, or None for an unpriced model."""
    if model.startswith("local/"):
        return None
    lm = litellm()
    try:
        cost_in, _ = lm.cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=0)
        _, cost_out = lm.cost_per_token(model=model, prompt_tokens=0, completion_tokens=1_000_000)
    except Exception:
        return None
    return float(cost_in) / 1e6, float(cost_out) / 1e6


def price(model: str, tokens_in: int, tokens_out: int) -> float:
    """Dollars for the tokens under LiteLLM's price map; 0 for unpriced and local models.

    Unit prices are looked up once per model (the look-up is slow for unknown models);
    prompts past 128k tokens, where some models change tier, take the full look-up.
    """
    units = _unit_prices(model)
    if units is None:
        return 0.0
    if tokens_in > 128_000:
        lm = litellm()
        try:
            cost_in, cost_out = lm.cost_per_token(model=model, prompt_tokens=tokens_in,
                                                         completion_tokens=tokens_out)
            return float(cost_in + cost_out)
        except Exception:
            return 0.0
    return tokens_in * units[0] + tokens_out * units[1]



def batch_price(model: str, tokens_in: int, tokens_out: int) -> float:
    """Dollars for the tokens at the provider's batch price (LiteLLM's ``*_batches`` prices,
    else half the live price, as OpenAI, Azure and Vertex charge)."""
    entry = litellm().model_cost.get(model) or litellm().model_cost.get(model.split("/", 1)[-1]) or {}
    per_in, per_out = entry.get("input_cost_per_token_batches"), entry.get("output_cost_per_token_batches")
    if per_in is not None and per_out is not None and tokens_in <= 128_000:
        return tokens_in * float(per_in) + tokens_out * float(per_out)
    return price(model, tokens_in, tokens_out) / 2



def count_text_tokens(model: str, text: str | None) -> int:
    """Tokens of an answer's text under the model's tokenizer (a word-ish count as fallback)."""
    if not text:
        return 0
    lm = litellm()
    try:
        return int(lm.token_counter(model=model, text=text, count_response_tokens=True))
    except Exception:
        return max(1, len(text) // 4)


def _model_for_price(spec: ModelSpec) -> str:
    if spec.deployments:
        return str(spec.deployments[0].get("litellm_params", {}).get("model", spec.model))
    return spec.model


def priced(spec: ModelSpec) -> bool:
    """Whether a budget can be kept for ``spec``: a known price, the caller's, or free."""
    return spec.is_local or spec.price is not None or _unit_prices(_model_for_price(spec)) is not None


def price_of(spec: ModelSpec, tokens_in: int, tokens_out: int, *, batch: bool = False,
             model: str | None = None) -> float:
    """Dollars of ``spec``'s tokens (``model``: the deployment that answered, behind a router)."""
    if spec.is_local:
        return 0.0
    if spec.price is not None:
        return (tokens_in * spec.price[0] + tokens_out * spec.price[1]) / 1e6
    chosen = model or _model_for_price(spec)
    return batch_price(chosen, tokens_in, tokens_out) if batch else price(chosen, tokens_in, tokens_out)


#: More tokens than any model reads or writes in one request: reported usage above it is
#: not true (and would overflow the integers of a table or a database).
MAX_PLAUSIBLE_TOKENS = 100_000_000


def usage_tokens(usage: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a reported usage, None where it is missing or cannot be
    true: not whole numbers, no prompt tokens, negative, or more than :data:`MAX_PLAUSIBLE_TOKENS`."""
    if usage is None:
        return None

    def get(name: str) -> Any:
        return usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)

    found = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        found.append(value)
    tokens_in, tokens_out = found
    if not 0 < tokens_in <= MAX_PLAUSIBLE_TOKENS or not 0 <= tokens_out <= MAX_PLAUSIBLE_TOKENS:
        return None
    return tokens_in, tokens_out


# --- media ------------------------------------------------------------------------------

#: Audio input tokens per second of sound, by model family: (regular expression on the model
#: name without its provider prefix, tokens per second, where the rate is documented). A model
#: that no row matches has no known rate, and its audio is not priced rather than guessed.
AUDIO_TOKENS_PER_SECOND: tuple[tuple[str, int, str], ...] = (
    # OpenAI: "Audio tokens in user messages are 1 token per 100 ms of audio"
    # (https://developers.openai.com/api/docs/guides/realtime-costs); the chat-completions
    # audio models (gpt-4o-audio-preview, gpt-audio) take the same audio input tokens.
    (r"gpt-4o(-mini)?-(audio|realtime)|gpt-(audio|realtime)", 10,
     "https://developers.openai.com/api/docs/guides/realtime-costs"),
    # Google: "Gemini represents each second of audio as 32 tokens; for example, one minute of
    # audio is represented as 1,920 tokens" (https://ai.google.dev/gemini-api/docs/audio).
    # Gemini 3 is left out: its documented rate was not found.
    (r"gemini-(1\.5|2\.0|2\.5)-", 32, "https://ai.google.dev/gemini-api/docs/audio"),
)

#: Image input tokens by the OpenAI tile rule: (model family, tokens per image, tokens per
#: 512-pixel tile). At detail "high" or "auto" an image is fitted into 2048 x 2048, then its
#: short side brought down to 768 pixels, and cut into 512 x 512 tiles; at detail "low" it is
#: the per-image tokens alone (https://platform.openai.com/docs/guides/images-vision,
#: "Calculating costs"). The first matching row wins.
OPENAI_IMAGE_TILES: tuple[tuple[str, int, int], ...] = (
    (r"gpt-4o-mini", 2833, 5667),
    (r"gpt-4o|gpt-4\.1(?!-mini|-nano)|gpt-4-turbo", 85, 170),
)

#: Gemini 2.x images: 258 tokens when both sides are at most 384 pixels, else 258 per 768 x 768
#: tile (https://ai.google.dev/gemini-api/docs/tokens, "Multimodal tokens").
GEMINI_IMAGE = (r"gemini-(2\.0|2\.5)-", 258, 384, 768)


@dataclass(frozen=True)
class MediaCost:
    """The media input of one request and its price in US dollars.

    ``priced`` is False when some media part could not be priced (no known token rate, no
    price in LiteLLM's table or the annotator's ``price``); ``cost_usd`` then holds the parts
    that could be, and ``unpriced`` says, one line each, what was not and why.
    """

    audio_seconds: float = 0.0
    audio_tokens: int = 0
    image_count: int = 0
    image_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    unpriced: tuple[str, ...] = field(default=())


def media_cost(spec: ModelSpec, messages: Sequence[Mapping[str, Any]]) -> MediaCost:
    """The audio and image input of one request to ``spec`` and its price.

    Audio: the seconds of each ``input_audio`` part (read from its WAV header), times the
    model's tokens per second (:data:`AUDIO_TOKENS_PER_SECOND`), rounded up per clip. Its price
    is the first of: LiteLLM's ``input_cost_per_audio_token`` x tokens,
    ``input_cost_per_audio_per_second`` (else ``input_cost_per_second``) x seconds; the
    annotator's ``price`` (input dollars per million tokens) x tokens; LiteLLM's
    ``input_cost_per_token`` x tokens for a model the table says takes audio (Gemini 2.5 Pro
    bills every input modality at one price). Audio tokens are counted only at a known rate.

    Images: each ``image_url`` part; LiteLLM's ``input_cost_per_image`` when the table has it,
    else tokens (:data:`OPENAI_IMAGE_TILES`, :data:`GEMINI_IMAGE`; the size is read from a
    ``data:`` URL's header bytes, never fetched: an ``http(s)`` image costs the OpenAI rule's
    most, 8 tiles, and is not priced for Gemini) at ``input_cost_per_image_token``, else the
    annotator's ``price``, else ``input_cost_per_token`` (OpenAI bills image tokens as text).

    Local models cost nothing. The text of the messages is :func:`count_tokens`'s.
    """
    model = _model_for_price(spec)
    family = model.rsplit("/", 1)[-1]
    entry = {} if spec.is_local else _model_entry(model)
    caller = spec.price[0] / 1e6 if spec.price is not None else None
    seconds, audio_tokens, images, image_tokens, cost = 0.0, 0, 0, 0, 0.0
    unpriced: list[str] = []
    for part in _media_parts(messages):
        if part.get("type") == "input_audio":
            clip = _wav_seconds(part.get("input_audio", {}).get("data", ""))
            if clip is None:
                unpriced.append("an input_audio part is not a readable WAV clip")
                continue
            seconds += clip
            if spec.is_local:
                continue
            rate = _audio_rate(family)
            tokens = math.ceil(round(clip * rate, 6)) if rate is not None else None
            audio_tokens += tokens or 0
            dollars = _audio_price(entry, caller, clip, tokens)
            if dollars is None:
                unpriced.append(f"{spec.name}: audio is not priced: " + (
                    f"no known audio tokens per second for {model!r} (see AUDIO_TOKENS_PER_SECOND)"
                    if rate is None else f"no audio or input price for {model!r}; give the annotator a price"))
            else:
                cost += dollars
        else:
            images += 1
            if spec.is_local:
                continue
            image = part.get("image_url")
            url, detail = (image.get("url", ""), image.get("detail", "auto")) if isinstance(image, Mapping) \
                else (str(image or ""), "auto")
            per_image = entry.get("input_cost_per_image")
            tokens = _image_tokens(family, url, detail)
            image_tokens += tokens or 0
            per_token = next((float(v) for v in (entry.get("input_cost_per_image_token"), caller,
                                                 entry.get("input_cost_per_token")) if v is not None), None)
            if per_image is not None:
                cost += float(per_image)
            elif tokens is not None and per_token is not None:
                cost += tokens * per_token
            else:
                unpriced.append(f"{spec.name}: an image is not priced: " + (
                    f"no known image tokens for {model!r} at this size" if tokens is None
                    else f"no input price for {model!r}; give the annotator a price"))
    return MediaCost(audio_seconds=seconds, audio_tokens=audio_tokens, image_count=images,
                     image_tokens=image_tokens, cost_usd=cost, priced=not unpriced, unpriced=tuple(unpriced))


def _media_parts(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [part for message in messages if isinstance(message.get("content"), list)
            for part in message["content"]
            if isinstance(part, Mapping) and part.get("type") in ("input_audio", "image_url")]


@functools.cache
def _model_entry(model: str) -> Mapping[str, Any]:
    """LiteLLM's table entry of the model (else of its name after the provider prefix), else {}.

    ``litellm.model_cost`` is read directly: ``get_model_info`` prints to the terminal for a
    model it does not know."""
    table = litellm().model_cost
    entry = table.get(model) or table.get(model.split("/", 1)[-1]) or {}
    return {k: v for k, v in entry.items() if v is not None}


def _audio_rate(family: str) -> int | None:
    return next((rate for pattern, rate, _ in AUDIO_TOKENS_PER_SECOND if re.match(pattern, family)), None)


def _audio_price(entry: Mapping[str, Any], caller: float | None, seconds: float,
                 tokens: int | None) -> float | None:
    # a price the table holds as null (LiteLLM fills some entries' keys with None) is no price
    if tokens is not None and entry.get("input_cost_per_audio_token") is not None:
        return tokens * float(entry["input_cost_per_audio_token"])
    for name in ("input_cost_per_audio_per_second", "input_cost_per_second"):
        if entry.get(name) is not None:
            return seconds * float(entry[name])
    if tokens is not None and caller is not None:
        return tokens * caller
    if tokens is not None and entry.get("supports_audio_input") and entry.get("input_cost_per_token") is not None:
        return tokens * float(entry["input_cost_per_token"])
    return None


def _wav_seconds(data: str) -> float | None:
    """Seconds of a base64 WAV clip, from its ``fmt `` and ``data`` chunks."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    at, byte_rate, size = 12, None, None
    while at + 8 <= len(raw) and (byte_rate is None or size is None):
        name, length = raw[at:at + 4], struct.unpack("<I", raw[at + 4:at + 8])[0]
        if name == b"fmt " and length >= 16:
            byte_rate = struct.unpack("<I", raw[at + 16:at + 20])[0]
        elif name == b"data":
            size = min(length, len(raw) - at - 8)
        at += 8 + length + (length & 1)
    return size / byte_rate if byte_rate and size is not None else None


def _image_tokens(family: str, url: str, detail: str) -> int | None:
    """Input tokens of one image for the model family, None where no rule or no size is known."""
    size = _image_size(url)
    for pattern, base, tile in OPENAI_IMAGE_TILES:
        if re.match(pattern, family):
            if detail == "low":
                return base
            width, height = size or (768, 2048)  # unknown size: the most tiles the rule gives
            fit = min(1.0, 2048 / max(width, height))
            scale = fit * min(1.0, 768 / (min(width, height) * fit))
            tiles = math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
            return base + tile * tiles
    pattern, per_tile, small, side = GEMINI_IMAGE
    if re.match(pattern, family) and size is not None:
        width, height = size
        return per_tile if width <= small and height <= small else \
            per_tile * math.ceil(width / side) * math.ceil(height / side)
    return None


def _image_size(url: str) -> tuple[int, int] | None:
    """(width, height) of a ``data:image/...;base64`` URL's PNG, GIF, JPEG or WebP, else None."""
    head, _, payload = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        return None
    try:
        raw = base64.b64decode(payload, validate=True)
        if raw.startswith(b"\x89PNG\r\n\x1a\n"):
            return struct.unpack(">II", raw[16:24])
        if raw[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", raw[6:10])
        if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
            kind = raw[12:16]
            if kind == b"VP8X":
                return (int.from_bytes(raw[24:27], "little") + 1, int.from_bytes(raw[27:30], "little") + 1)
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", raw[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                bits = int.from_bytes(raw[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if raw[:3] == b"\xff\xd8\xff":
            return _jpeg_size(raw)
    except (binascii.Error, ValueError, struct.error):
        return None
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        length = struct.unpack(">H", raw[at + 2:at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            height, width = struct.unpack(">HH", raw[at + 5:at + 9])
            return width, height
        at += 2 + length
    return None


__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "GEMINI_IMAGE",
    "MAX_PLAUSIBLE_TOKENS",
    "OPENAI_IMAGE_TILES",
    "MediaCost",
    "batch_price",
    "count_text_tokens",
    "count_tokens",
    "media_cost",
    "price",
    "price_of",
    "priced",
    "text_messages",
    "usage_tokens",
]
