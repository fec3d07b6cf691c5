"""What a text + audio MELT run costs: ``plan`` over MELT's 7,024 train utterances with clips.

    python benchmarks/melt_audio_cost.py                 # all rows (about 10 minutes on 2 cores)
    python benchmarks/melt_audio_cost.py --sample 500    # a seeded sample, scaled

MELD's audio is not on this machine, but MELD's CSVs give each utterance's StartTime and
EndTime. For the rows of MELT's released train file (``../shared/data/melt/meld_train.csv``,
keyed by Dialogue_ID and Utterance_ID to MELD train's rows, whose text the example sends),
this writes a silent 16 kHz mono WAV of each clip's subtitle duration, then runs ``plan``
itself (no call is made; ``cache=False``) on the job ``examples/melt/run_melt.py --audio-dir``
runs: the text-cue annotator ``gpt-4o`` (``emotion_melt``) and the clip-with-cues
(``emotion_audio``) and clip-only (``emotion_audio_only``) annotators of an audio model, for
``gpt-4o-audio-preview-2024-12-17`` and ``gemini/gemini-2.5-flash``, at k = 1 and k = 5.
Audio tokens and dollars are ``llm_annotator.providers.pricing.media_cost``'s (OpenAI 10
tokens per second, Gemini 32; LiteLLM's price table). Rows are planned in chunks (clips
written, planned, deleted) so the disk holds one chunk's clips.

Clips longer than the templates' 30 s (one in MELT train, 41.0 s) are left out, as the
example leaves them out. MELT's other 1,794 utterances (its dev and test subsets, not in
``../shared/data``) are priced at the mean cost per utterance of the rows planned.
Writes ``benchmarks/results/melt_audio_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm_annotator.corpora.meld import load_meld  # noqa: E402
from llm_annotator.engine.plan import plan  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
RATE = 16_000
MAX_SECONDS = 30.0
EXTRA = 1794  # MELT's dev and test utterances: 7,024 + 1,794 = 8,818
TEXT = "gpt-4o"
AUDIO = ("gpt-4o-audio-preview-2024-12-17", "gemini/gemini-2.5-flash")
FIELDS = ("requests", "tokens_in", "tokens_out_expected", "tokens_out_max", "audio_seconds", "audio_tokens",
          "media_usd", "cost_usd_expected", "cost_usd_max")


def melt_rows(meld_dir: Path, melt_csv: Path) -> pd.DataFrame:
    """MELD train's rows of MELT's released subset, in MELT's order, with ``duration_s``."""
    meld = load_meld(meld_dir, "train")
    keys = pd.read_csv(melt_csv)[["Dialogue_ID", "Utterance_ID"]]
    rows = keys.merge(meld, on=["Dialogue_ID", "Utterance_ID"], how="left", validate="one_to_one")
    assert rows["Utterance"].notna().all(), "a MELT row is not in MELD train"
    return rows


def annotators() -> list[object]:
    return [TEXT, *({"model": m, "task": t} for m in AUDIO for t in ("emotion_audio", "emotion_audio_only"))]


def plan_chunks(rows: pd.DataFrame, ks: tuple[int, ...], chunk: int) -> dict[int, dict[str, dict[str, float]]]:
    """Summed ModelPlan figures per k and annotator over ``rows``, planned ``chunk`` rows at a time."""
    totals: dict[int, dict[str, dict[str, float]]] = {k: {} for k in ks}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for start in range(0, len(rows), chunk):
            part = rows.iloc[start:start + chunk]
            names = [f"{c}.wav" for c in part["clip"]]
            for name, seconds in zip(names, part["duration_s"], strict=True):
                soundfile.write(str(root / name), np.zeros(round(seconds * RATE), dtype="int16"), RATE,
                                subtype="PCM_16")
            data = part.assign(item=part["clip"], clip=names)
            for k in ks:
                found = plan(data, "emotion_melt", annotators(), samples=k, id_column="item", cache=False,
                             media_root=root)
                for m in found.models:
                    assert m.priced, m.unpriced
                    into = totals[k].setdefault(m.annotator, dict.fromkeys(FIELDS, 0.0))
                    for name in FIELDS:
                        into[name] += getattr(m, name)
            for name in names:
                (root / name).unlink()
            print(f"  planned {min(start + chunk, len(rows))}/{len(rows)} rows", flush=True)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld-dir", default=str(SHARED / "meld"))
    parser.add_argument("--melt-csv", default=str(SHARED / "melt" / "meld_train.csv"))
    parser.add_argument("--sample", type=int, help="plan a seeded sample of this many rows and scale")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "melt_audio_cost.json"))
    args = parser.parse_args(argv)

    rows = melt_rows(Path(args.meld_dir), Path(args.melt_csv))
    too_long = rows[rows["duration_s"] > MAX_SECONDS]
    kept = rows[rows["duration_s"] <= MAX_SECONDS]
    planned = kept.sample(args.sample, random_state=0) if args.sample else kept
    started = time.perf_counter()
    totals = plan_chunks(planned, (1, 5), args.chunk)
    wall = time.perf_counter() - started

    scale_kept = len(kept) / len(planned)
    per_row = {k: sum(a["cost_usd_expected"] for a in t.values()) / len(planned) for k, t in totals.items()}
    jobs: dict[str, dict[str, object]] = {}
    for k, per in totals.items():
        for audio in AUDIO:
            names = [TEXT, f"{audio}/emotion_audio", f"{audio}/emotion_audio_only"]
            chosen = {n: {f: round(v * scale_kept, 6) for f, v in per[n].items()} for n in names}
            expected = sum(a["cost_usd_expected"] for a in chosen.values())
            at_most = sum(a["cost_usd_max"] for a in chosen.values())
            mean = expected / len(kept)
            jobs[f"k={k} {audio}"] = {
                "samples": k, "audio_model": audio, "utterances": len(kept), "annotators": chosen,
                "usd_expected": round(expected, 2), "usd_max": round(at_most, 2),
                "audio_usd": round(sum(a["media_usd"] for a in chosen.values()), 2),
                f"usd_expected_{len(rows) + EXTRA}_scaled": round(mean * (len(rows) + EXTRA), 2),
                f"usd_max_{len(rows) + EXTRA}_scaled": round(at_most / len(kept) * (len(rows) + EXTRA), 2),
            }
    figures = {
        "command": "python benchmarks/melt_audio_cost.py" + (f" --sample {args.sample}" if args.sample else ""),
        "melt_rows": len(rows), "rows_planned": len(planned), "rows_over_30s_left_out": too_long["clip"].tolist(),
        "clip_seconds_total": round(float(kept["duration_s"].sum()), 1),
        "clip_seconds_mean": round(float(kept["duration_s"].mean()), 3),
        "extra_utterances_scaled": EXTRA, "clips": "silent 16 kHz mono PCM16 WAV of MELD's EndTime - StartTime",
        "plan_wall_s": round(wall, 1), "mean_usd_per_utterance_all_annotators": per_row, "jobs": jobs,
    }
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    for name, job in jobs.items():
        print(f"{name}: {job['utterances']} utterances ${job['usd_expected']:.2f} expected "
              f"(${job['usd_max']:.2f} at most; audio ${job['audio_usd']:.2f}); "
              f"{len(rows) + EXTRA} scaled ${job[f'usd_expected_{len(rows) + EXTRA}_scaled']:.2f} "
              f"(${job[f'usd_max_{len(rows) + EXTRA}_scaled']:.2f})")
    print(f"wrote {args.out} ({wall:.0f} s of plan)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
