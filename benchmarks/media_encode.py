"""Audio in the prompt: what reading, checking and re-encoding a clip costs.

    python benchmarks/media_encode.py [--rate 16000]

Every EmoDB clip of ../shared/data/emodb/wav is encoded as the prompt sends it (mono
16-bit WAV, resampled to ``--rate``, and at its own rate), the conversion cache bypassed;
prints and writes benchmarks/results/media_encode.json: milliseconds per clip (median of
3 passes) and the bytes and base64 characters a clip adds to a request.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_annotator.core.media import MediaSpec, encode_audio  # noqa: E402

CLIPS = ROOT.parent / "shared" / "data" / "emodb" / "wav"


def per_clip_ms(paths: list[Path], spec: MediaSpec) -> tuple[float, int]:
    passes = []
    size = 0
    for _ in range(3):
        started = time.perf_counter()
        for path in paths:
            size = len(encode_audio(str(path), spec))
        passes.append((time.perf_counter() - started) / len(paths) * 1000)
    return statistics.median(passes), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=16000)
    args = parser.parse_args()
    paths = sorted(CLIPS.glob("*.wav"))
    if not paths:
        sys.exit(f"no clips at {CLIPS}: the benchmark reads ../shared/data (docs/data.md)")
    figures = {"clips": len(paths), "file_bytes": paths[0].stat().st_size}
    for name, spec in (("resampled", MediaSpec(kind="audio", sample_rate=args.rate)),
                       ("own_rate", MediaSpec(kind="audio"))):
        ms, size = per_clip_ms(paths, spec)
        figures[name] = {"ms_per_clip": round(ms, 2), "bytes": size,
                         "base64_chars": len(base64.b64encode(b"\0" * size))}
    figures["rate"] = args.rate
    figures["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    figures["machine"] = platform.platform()
    out = ROOT / "benchmarks" / "results" / "media_encode.json"
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
