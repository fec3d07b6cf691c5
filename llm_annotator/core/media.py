"""Media in the prompt: audio and images from a row's fields, read, checked and encoded.

A task declares its media fields in the front matter::

    media:
      clip: {kind: audio, max_seconds: 30, sample_rate: 16000}
      frame: {kind: image, max_bytes: 5000000}

and places them in the body with ``{{ media("clip") }}``. A field holds a file path
(relative to the media root: ``annotate(media_root=...)``, else the data file's folder)
or, for images, an ``http(s)://`` or ``data:`` URL, which is passed on as it is.

Audio is read with ``soundfile`` (WAV, FLAC, OGG ...), mixed down to mono, resampled to
``sample_rate`` when one is given (in the frequency domain, :func:`resample`) and re-encoded as
16-bit PCM WAV: the same samples always give the same bytes, so the prompt hash follows
the sound, not the file's name or container. Images are sent as their own bytes.
"""

from __future__ import annotations

import base64
import copy
import functools
import io
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from llm_annotator.core.errors import DataError

#: What ``media("NAME")`` puts in the rendered text, replaced by the content part.
MARK = "\x00media:{}\x00"
MARK_PATTERN = r"\x00media:([^\x00]*)\x00"

INSTALL = "pip install 'soundfile>=0.12,<1' (a dependency of llm-annotator)"

_IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"GIF87a": "gif", b"GIF89a": "gif"}


class MediaSpec(BaseModel):
    """One media field of a task: its kind and limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["audio", "image"]
    max_seconds: float | None = None   # audio: the longest clip accepted
    sample_rate: int | None = None     # audio: resampled to this rate (Hz); else kept
    max_bytes: int | None = None       # image: the largest file accepted

    @model_validator(mode="after")
    def _check(self) -> MediaSpec:
        if self.kind == "image" and (self.max_seconds is not None or self.sample_rate is not None):
            raise ValueError("an image field takes max_bytes, not max_seconds or sample_rate")
        if self.kind == "audio" and self.max_bytes is not None:
            raise ValueError("an audio field takes max_seconds and sample_rate, not max_bytes")
        for name in ("max_seconds", "sample_rate", "max_bytes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive")
        return self


def default_root(data: Any, media_root: str | Path | None) -> Path:
    """Where relative media paths are resolved: ``media_root``, else the data file's folder,
    else the working directory (data given as rows)."""
    if media_root is not None:
        return Path(media_root)
    if isinstance(data, str | Path) and Path(data).is_file():
        return Path(data).resolve().parent
    return Path.cwd()


def content_part(name: str, spec: MediaSpec, value: Any, root: Path, where: str) -> dict[str, Any]:
    """The OpenAI-style content part of one media value; errors name the row, field and path."""
    text = str(value).strip()
    if not text:
        raise DataError(f"{where}: media field {name!r} is empty", fix="give the file's path, or drop the row")
    if text.startswith(("http://", "https://", "data:")):
        shown = text.split("?", 1)[0].split(",", 1)[0][:80]  # no query string (signatures), no payload
        if spec.kind == "audio":
            raise DataError(f"{where}: media field {name!r} holds the URL {shown!r}; audio is sent as data",
                            fix="download the clip and give its file path (relative to --media-root)")
        if text.startswith("data:") and not text.startswith("data:image/"):
            raise DataError(f"{where}: media field {name!r} holds a data URL that is not an image ({shown!r})",
                            fix="give an image (data:image/png;base64,...) or its file path")
        return {"type": "image_url", "image_url": {"url": text}}
    path = Path(text)
    if not path.is_absolute():
        path = root / path
    try:
        stat = path.stat()
    except OSError:
        raise DataError(f"{where}: media field {name!r}: {path} does not exist",
                        fix="correct the path, or pass the folder it is relative to (media_root=, "
                            "CLI: --media-root DIR)") from None
    if not path.is_file():
        raise DataError(f"{where}: media field {name!r}: {path} is not a file", fix="give the path of a file")
    try:
        # the cache's key holds the change time too, which no copy or utime can set back
        found = _part(str(path.resolve()), (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino), spec)
        return copy.deepcopy(found)  # never the cache's own
    except _Refused as exc:
        raise DataError(f"{where}: media field {name!r}: {path}: {exc.args[0]}", fix=exc.fix) from None


class _Refused(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


@functools.lru_cache(maxsize=64)
def _part(path: str, version: tuple[int, int, int, int], spec: MediaSpec) -> dict[str, Any]:
    """One file's content part (cached while the file's size, times and inode stay the same)."""
    size = version[0]
    if spec.kind == "audio":
        data = encode_audio(path, spec)
        return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": "wav"}}
    if spec.max_bytes is not None and size > spec.max_bytes:
        raise _Refused(f"{size} bytes is above max_bytes {spec.max_bytes}",
                       fix="shrink the image, or raise max_bytes in the task's media field")
    raw = Path(path).read_bytes()
    kind = next((k for magic, k in _IMAGE_MAGIC.items() if raw.startswith(magic)), None)
    if kind is None and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        kind = "webp"
    if kind is None:
        raise _Refused("is not a PNG, JPEG, GIF or WebP image", fix="convert the image to PNG or JPEG")
    return {"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{base64.b64encode(raw).decode()}"}}


def resample(x: Any, n: int) -> Any:
    """``x`` resampled to ``n`` samples in the frequency domain (band-limited, periodic):
    the spectrum cut or padded to ``n``'s length, as ``scipy.signal.resample`` does."""
    import numpy as np

    spectrum = np.fft.rfft(x.astype("float64"))
    out = np.zeros(n // 2 + 1, dtype=complex)
    keep = min(len(spectrum), len(out))
    out[:keep] = spectrum[:keep]
    if n % 2 == 0 and keep == len(out) and n < len(x):  # the new Nyquist bin holds both halves
        out[-1] = out[-1].real * 2
    return (np.fft.irfft(out, n) * (n / len(x))).astype("float32")


def encode_audio(path: str, spec: MediaSpec) -> bytes:
    """The clip as mono 16-bit PCM WAV at ``spec.sample_rate`` (else its own rate)."""
    try:
        import soundfile
    except ImportError:
        raise _Refused("reading audio needs soundfile, which is not installed", fix=INSTALL) from None
    try:
        info = soundfile.info(path)
        seconds = info.frames / info.samplerate
        if spec.max_seconds is not None and seconds > spec.max_seconds:
            raise _Refused(f"the clip lasts {seconds:.2f} s, above max_seconds {spec.max_seconds:g}",
                           fix="cut the clip, or raise max_seconds in the task's media field")
        if info.frames < 1:
            raise _Refused("the clip holds no samples", fix="remove the row, or give a clip with sound")
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise _Refused(f"not readable as audio ({str(exc).splitlines()[-1].strip()})",
                       fix="give a WAV, FLAC or OGG file (convert others, e.g. with ffmpeg)") from None
    mono = samples.mean(axis=1)
    if spec.sample_rate is not None and rate != spec.sample_rate:
        length = round(len(mono) * spec.sample_rate / rate)
        if length < 1:
            raise _Refused(f"the clip ({len(mono)} samples at {rate} Hz) is too short to resample to "
                           f"{spec.sample_rate} Hz", fix="remove the row, or give a longer clip")
        mono = resample(mono, length)
        rate = spec.sample_rate
    buffer = io.BytesIO()
    soundfile.write(buffer, mono.clip(-1.0, 1.0), int(rate), format="WAV", subtype="PCM_16")
    return buffer.getvalue()


__all__ = ["INSTALL", "MARK", "MARK_PATTERN", "MediaSpec", "content_part", "default_root", "encode_audio"]
